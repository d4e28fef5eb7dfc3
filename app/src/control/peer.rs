//! Another environment's Quarry, through its REST API: where the control plane runs a
//! promotion's reference check when the candidate release's workers read that
//! environment's queue and not this server's (`[control.peers.<env>]`).
//!
//! The check is what an analyst there would do: upload the reference's original file
//! with the options it was read with, submit the analysis, follow the job, download
//! the result as Parquet, delete the upload. Every call is bounded in time, and the
//! result's download and every JSON answer (1 MiB) in size. An error says whether
//! trying again may help ([`PeerError::transient`]: no answer, a 5xx, a 429) or not
//! (any other 4xx).

use super::ControlPlane;
use quarry_core::blob::BlobStore;
use quarry_core::config::PeerConfig;
use quarry_core::datasets::StoredDataset;
use quarry_core::{Error, Result};
use quarry_domain::{DatasetFormat, IngestOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// How long a JSON call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an upload or a download may take in all.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a JSON answer (or an error's body) read from a peer.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Reads at most `max` bytes of a body; `None` when it is longer (or breaks off).
async fn bounded_body(mut response: reqwest::Response, max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if out.len() + chunk.len() > max {
            return None;
        }
        out.extend_from_slice(&chunk);
    }
    Some(out)
}

/// Why a call to a peer did not give what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerError {
    /// The peer did not answer, or answered 5xx or 429: the same call may work later.
    pub transient: bool,
    /// The peer's HTTP status, when it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

type Answer<T> = Result<T, PeerError>;

/// One environment's API, with a token of a user there.
#[derive(Clone)]
pub struct Peer {
    /// The environment's name.
    pub env: String,
    base: String,
    token: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("env", &self.env)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The API of environment `env` as `[control.peers.<env>]` gives it (its stack's
/// `ApiUrl` output when the URL is empty); a 409 says what is missing.
pub async fn resolve(
    plane: &ControlPlane,
    peers: &BTreeMap<String, PeerConfig>,
    env: &str,
    http: &reqwest::Client,
) -> Result<Peer> {
    let config = peers.get(env).ok_or_else(|| {
        Error::Conflict(format!(
            "{env} is not in [control.peers]: give its API's URL and a token there"
        ))
    })?;
    let url = if config.url.trim().is_empty() {
        let def = plane.env(env)?;
        let outputs =
            plane.deployer(def).await.outputs().await.map_err(|e| {
                Error::Internal(anyhow::anyhow!("reading {env}'s stack outputs: {e}"))
            })?;
        outputs.get("ApiUrl").cloned().ok_or_else(|| {
            Error::Conflict(format!(
                "control.peers.{env}.url is empty and {env}'s stack has no ApiUrl output: set \
                 the URL of {env}'s API"
            ))
        })?
    } else {
        config.url.clone()
    };
    Peer::new(env, &url, config.token.clone(), http.clone()).map_err(Error::Conflict)
}

/// The HTTP client every peer call goes through.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("quarry-control-plane/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

impl Peer {
    /// The API of `env` at `url` (`http` or `https`, no query), called with `token`;
    /// the error says what to fix in `[control.peers.<env>]`.
    pub fn new(
        env: &str,
        url: &str,
        token: SecretString,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let base = url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| {
            format!("control.peers.{env}.url `{base}` is not a URL ({e}): give the API's root, such as https://quarry-{env}.example.com")
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || parsed.host_str().is_none()
        {
            return Err(format!(
                "control.peers.{env}.url `{base}` must be an http or https URL without a query"
            ));
        }
        if token.expose_secret().trim().is_empty() {
            return Err(format!(
                "control.peers.{env}.token is empty: set QUARRY_CONTROL__PEERS__{}__TOKEN to \
                 the token of a user of {env}",
                env.to_ascii_uppercase()
            ));
        }
        Ok(Self {
            env: env.to_owned(),
            base: base.to_owned(),
            token,
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose_secret())
    }

    /// Sends and checks the status: `what` names the call in errors.
    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Answer<reqwest::Response> {
        let env = &self.env;
        let response = req.send().await.map_err(|e| PeerError {
            transient: true,
            status: None,
            message: format!("{env}'s API did not answer {what} ({}): {e}", self.base),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = bounded_body(response, MAX_ANSWER_BYTES)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let said = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let hint = match status.as_u16() {
            401 | 403 => format!(
                " (check control.peers.{env}.token: it must be a valid token of a user of {env})"
            ),
            _ => String::new(),
        };
        Err(PeerError {
            transient: status.is_server_error() || status.as_u16() == 429,
            status: Some(status.as_u16()),
            message: format!("{env} answered {what} with {status}: {said}{hint}"),
        })
    }

    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> Answer<Value> {
        let response = self.send(req.timeout(CALL_TIMEOUT), what).await?;
        self.answer(response, what).await
    }

    /// A JSON answer, of at most [`MAX_ANSWER_BYTES`].
    async fn answer(&self, response: reqwest::Response, what: &str) -> Answer<Value> {
        let env = &self.env;
        let body = bounded_body(response, MAX_ANSWER_BYTES)
            .await
            .ok_or_else(|| PeerError {
                transient: true,
                status: None,
                message: format!(
                    "{env}'s answer to {what} broke off or is over {MAX_ANSWER_BYTES} bytes"
                ),
            })?;
        serde_json::from_slice(&body).map_err(|e| PeerError {
            transient: true,
            status: None,
            message: format!("{env}'s answer to {what} is not JSON: {e}"),
        })
    }

    /// Uploads `file` as dataset `name`, to be read as `format` with `options`;
    /// returns the dataset there.
    pub async fn upload(
        &self,
        name: &str,
        format: DatasetFormat,
        options: &IngestOptions,
        file: &Path,
    ) -> Answer<Value> {
        let opened = tokio::fs::File::open(file).await.map_err(|e| PeerError {
            transient: false,
            status: None,
            message: format!("the reference's dataset cannot be read here: {e}"),
        })?;
        let size = opened.metadata().await.map(|m| m.len()).ok();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(opened));
        let mut req = self
            .request(reqwest::Method::POST, "/api/v1/datasets")
            .query(&upload_query(name, format, options))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(TRANSFER_TIMEOUT)
            .body(body);
        if let Some(size) = size {
            req = req.header(reqwest::header::CONTENT_LENGTH, size);
        }
        let what = "the upload of the dataset";
        let response = self.send(req, what).await?;
        self.answer(response, what).await
    }

    /// Uploads a dataset stored here, its original read as it was read here, under a
    /// name starting `prefix` (and made unique); returns the dataset there.
    pub async fn upload_dataset(
        &self,
        blobs: &dyn BlobStore,
        d: &StoredDataset,
        prefix: &str,
    ) -> Answer<Value> {
        let file = blobs.local_file(&d.blob_key).await.map_err(|e| PeerError {
            transient: true,
            status: None,
            message: format!("the dataset's original cannot be read here: {e}"),
        })?;
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{prefix}-{}", &unique[..8]);
        let options = d.view.ingest.clone().unwrap_or_default();
        self.upload(&name, d.view.format, &options, file.path())
            .await
    }

    /// Submits `analysis` on dataset `dataset_id`; returns the job there.
    pub async fn submit(&self, dataset_id: &str, analysis: &Value) -> Answer<Value> {
        let body = serde_json::json!({ "dataset_id": dataset_id, "analysis": analysis });
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/jobs")
                .json(&body),
            "the reference analysis",
        )
        .await
    }

    /// Job `id` there, as its API shows it.
    pub async fn job(&self, id: &str) -> Answer<Value> {
        self.json(
            self.request(reqwest::Method::GET, &format!("/api/v1/jobs/{id}")),
            "a look at the check's job",
        )
        .await
    }

    /// Downloads job `id`'s result as Parquet into `to`; refuses one over `max_bytes`.
    /// Returns its size.
    pub async fn download_result(&self, id: &str, to: &Path, max_bytes: u64) -> Answer<u64> {
        let what = "the download of the check's result";
        let mut response = self
            .send(
                self.request(
                    reqwest::Method::GET,
                    &format!("/api/v1/jobs/{id}/result?format=parquet"),
                )
                .timeout(TRANSFER_TIMEOUT),
                what,
            )
            .await?;
        let too_big = |n: u64| PeerError {
            transient: false,
            status: None,
            message: format!(
                "the candidate's result is over {max_bytes} bytes ({n} or more), more than a \
                 comparison reads: pin a smaller result (aggregate or filter first)"
            ),
        };
        if let Some(n) = response.content_length()
            && n > max_bytes
        {
            return Err(too_big(n));
        }
        let local = |e: std::io::Error| PeerError {
            transient: true,
            status: None,
            message: format!("the check's result cannot be written here: {e}"),
        };
        let mut out = tokio::fs::File::create(to).await.map_err(local)?;
        let mut written = 0_u64;
        while let Some(chunk) = response.chunk().await.map_err(|e| PeerError {
            transient: true,
            status: None,
            message: format!("{}'s {what} broke off: {e}", self.env),
        })? {
            written += chunk.len() as u64;
            if written > max_bytes {
                return Err(too_big(written));
            }
            out.write_all(&chunk).await.map_err(local)?;
        }
        out.flush().await.map_err(local)?;
        Ok(written)
    }

    /// Asks job `id` there to stop.
    pub async fn cancel(&self, id: &str) -> Answer<()> {
        self.json(
            self.request(reqwest::Method::POST, &format!("/api/v1/jobs/{id}/cancel")),
            "the cancellation of the check's job",
        )
        .await
        .map(drop)
    }

    /// Deletes dataset `id` there (with its jobs' results); gone already is fine.
    pub async fn delete_dataset(&self, id: &str) -> Answer<()> {
        let req = self
            .request(reqwest::Method::DELETE, &format!("/api/v1/datasets/{id}"))
            .timeout(CALL_TIMEOUT);
        match self.send(req, "the deletion of the check's dataset").await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The query of an upload that reads the file as the original was read here.
fn upload_query(
    name: &str,
    format: DatasetFormat,
    o: &IngestOptions,
) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("name", name.to_owned()),
        ("format", format.as_str().to_owned()),
    ];
    if let Some(markers) = &o.null_values {
        q.push(("null_values", markers.join(",")));
    }
    if let Some(d) = o.delimiter {
        q.push((
            "delimiter",
            if d == '\t' {
                "tab".to_owned()
            } else {
                d.to_string()
            },
        ));
    }
    if let Some(h) = o.has_header {
        q.push(("has_header", h.to_string()));
    }
    if let Some(e) = o.encoding
        && let Ok(Value::String(e)) = serde_json::to_value(e)
    {
        q.push(("encoding", e));
    }
    if let Some(c) = o.decimal_comma {
        q.push(("decimal_comma", c.to_string()));
    }
    if !o.schema.is_empty() {
        q.push((
            "schema",
            serde_json::to_string(&o.schema).unwrap_or_default(),
        ));
    }
    if let Some(s) = &o.sheet {
        q.push(("sheet", s.clone()));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_domain::Encoding;

    #[test]
    fn peers_need_a_web_url_and_a_token() {
        let token = || SecretString::from("t0ken".to_owned());
        let http = reqwest::Client::new();
        let ok = Peer::new("staging", "https://q.example/ ", token(), http.clone()).unwrap();
        assert_eq!(ok.base, "https://q.example");
        for bad in ["q.example", "ftp://q.example", "https://q.example/?a=1", ""] {
            let e = Peer::new("staging", bad, token(), http.clone()).unwrap_err();
            assert!(e.contains("control.peers.staging.url"), "{bad}: {e}");
        }
        let e = Peer::new(
            "staging",
            "http://q",
            SecretString::from(" ".to_owned()),
            http,
        )
        .unwrap_err();
        assert!(e.contains("QUARRY_CONTROL__PEERS__STAGING__TOKEN"), "{e}");
    }

    #[test]
    fn an_upload_reads_the_file_as_it_was_read_here() {
        let options = IngestOptions {
            null_values: Some(vec!["NA".into(), String::new()]),
            delimiter: Some('\t'),
            has_header: Some(true),
            encoding: Some(Encoding::Latin1),
            decimal_comma: Some(false),
            schema: [("day".to_owned(), "date".to_owned())].into(),
            sheet: None,
        };
        let q = upload_query("n", DatasetFormat::Csv, &options);
        let get = |k: &str| q.iter().find(|(key, _)| *key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("format"), Some("csv"));
        assert_eq!(get("null_values"), Some("NA,"));
        assert_eq!(get("delimiter"), Some("tab"));
        assert_eq!(get("encoding"), Some("latin1"));
        assert_eq!(get("decimal_comma"), Some("false"));
        assert_eq!(get("schema"), Some(r#"{"day":"date"}"#));
        assert_eq!(get("sheet"), None);
        // What the upload route makes of it is what was given.
        let params = crate::server::uploads::OptionParams {
            null_values: get("null_values").map(str::to_owned),
            delimiter: get("delimiter").map(str::to_owned),
            has_header: get("has_header").map(str::to_owned),
            encoding: get("encoding").map(str::to_owned),
            decimal_comma: get("decimal_comma").map(str::to_owned),
            schema: get("schema").map(str::to_owned),
            sheet: None,
        };
        assert_eq!(params.parse().unwrap(), options);
    }
}

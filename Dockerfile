# The one `quarry` image every task runs; the task's command picks the role:
# `serve` (API), `orchestrator`, `worker`. Build: docker build -t quarry:<version> .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Release binary and the web bundle (WASM + styles) in target/site.
RUN rustup target add wasm32-unknown-unknown \
 && cargo xtask dist

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/quarry --create-home quarry
COPY --from=build /src/target/release/quarry /usr/local/bin/quarry
COPY --from=build /src/target/site /usr/local/share/quarry/site
ENV QUARRY_SITE_ROOT=/usr/local/share/quarry/site \
    QUARRY_DATA_DIR=/var/lib/quarry
USER quarry
WORKDIR /var/lib/quarry
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/quarry"]
CMD ["serve"]

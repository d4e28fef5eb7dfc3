//! The network: a VPC with two public and two private subnets in two availability
//! zones, either created by the stack or imported from an existing account.
//!
//! **Created** (`mode = "create"`): a VPC of `cidr` (DNS support and hostnames on),
//! cut into four equal quarters: public subnets 1 and 2, private subnets 1 and 2, the
//! `n`th of each kind in the `n`th zone of `Fn::GetAZs`. The public subnets route to an
//! internet gateway and hold only the load balancer and a **single NAT gateway**; every
//! task and the database run in the private subnets, without public IPs, and reach AWS
//! APIs and the image registry through that NAT gateway. One NAT gateway (in zone 1)
//! keeps the bill small; if zone 1 fails, tasks in zone 2 lose their way out until it
//! is back, which Quarry tolerates (jobs wait in the queue).
//!
//! **Imported** (`mode = "import"`): `vpc_id`, `public_subnets` (for the load
//! balancer) and `private_subnets` (tasks and database) of an existing VPC; the private
//! subnets must already reach the internet or have VPC endpoints for ECR, S3, SQS,
//! Secrets Manager, CloudWatch and ECS.

use crate::error::{PropError, StackError};
use crate::intrinsic::{get_att, get_azs, name_tag, ref_, select};
use crate::resource::{Resource, Template};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

const CONSTRUCT: &str = "network";

/// Whether the stack creates its VPC or uses an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Create a VPC, subnets, gateways and routes.
    Create,
    /// Use the VPC and subnets named in the props.
    Import,
}

/// Props of the network, `[stack.network]` in the environment file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkProps {
    /// `create` or `import`. Default: `create`.
    pub mode: NetworkMode,
    /// Create mode: the VPC's IPv4 block, `/16` to `/24` (each subnet gets a quarter).
    /// Default: `10.0.0.0/16`.
    #[serde(default)]
    pub cidr: Option<String>,
    /// Import mode: the VPC id, `vpc-…`.
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// Import mode: at least two subnets in different zones for the load balancer.
    #[serde(default)]
    pub public_subnets: Vec<String>,
    /// Import mode: at least two subnets in different zones for tasks and database.
    #[serde(default)]
    pub private_subnets: Vec<String>,
}

impl Default for NetworkProps {
    fn default() -> Self {
        Self {
            mode: NetworkMode::Create,
            cidr: Some("10.0.0.0/16".to_owned()),
            vpc_id: None,
            public_subnets: Vec::new(),
            private_subnets: Vec::new(),
        }
    }
}

/// Where the other constructs put their resources.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRefs {
    /// The VPC id.
    pub vpc: Value,
    /// Subnets for the internet-facing load balancer.
    pub public_subnets: Vec<Value>,
    /// Subnets for tasks and the database.
    pub private_subnets: Vec<Value>,
    /// Logical ids to `DependsOn` before anything internet-facing uses the public
    /// subnets (their routes to the internet gateway); empty when imported.
    pub public_ready: Vec<String>,
    /// Logical ids to `DependsOn` before tasks start in the private subnets (their
    /// routes to the NAT gateway, without which no image can be pulled); empty when
    /// imported.
    pub private_ready: Vec<String>,
}

/// A parsed IPv4 block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    base: u32,
    prefix: u32,
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or("is not an IPv4 block: write it as a.b.c.d/n, e.g. 10.40.0.0/16")?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| "is not an IPv4 block: write it as a.b.c.d/n, e.g. 10.40.0.0/16")?;
    let prefix: u32 = prefix
        .parse()
        .map_err(|_| "is not an IPv4 block: the prefix length after `/` must be a number")?;
    if !(16..=24).contains(&prefix) {
        return Err(format!(
            "has a /{prefix} prefix: use /16 to /24 (VPCs may be /16 to /28, and each of \
             the four subnets takes a quarter)"
        ));
    }
    let base = u32::from(addr);
    let host_bits = (1u32 << (32 - prefix)) - 1;
    if base & host_bits != 0 {
        let network = Ipv4Addr::from(base & !host_bits);
        return Err(format!(
            "has host bits set: the block starts at {network}/{prefix}"
        ));
    }
    Ok(Cidr { base, prefix })
}

impl Cidr {
    /// The `i`th quarter of the block.
    fn quarter(self, i: u32) -> String {
        let prefix = self.prefix + 2;
        let base = self.base + (i << (32 - prefix));
        format!("{}/{prefix}", Ipv4Addr::from(base))
    }
}

fn is_aws_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

impl NetworkProps {
    /// Checks the mode's keys: a valid `cidr` to create; a VPC id and two or more
    /// public and private subnet ids to import; no key of the other mode.
    pub fn validate(&self) -> Vec<PropError> {
        let mut errors = Vec::new();
        let err = |key: &str, value: String, problem: String| {
            PropError::new(CONSTRUCT, format!("stack.network.{key}"), value, problem)
        };
        match self.mode {
            NetworkMode::Create => {
                match &self.cidr {
                    None => errors.push(err(
                        "cidr",
                        "(missing)".into(),
                        "must be set with mode = \"create\": the VPC's block, e.g. \
                         \"10.40.0.0/16\""
                            .into(),
                    )),
                    Some(cidr) => {
                        if let Err(problem) = parse_cidr(cidr) {
                            errors.push(err("cidr", format!("{cidr:?}"), problem));
                        }
                    }
                }
                if let Some(vpc) = &self.vpc_id {
                    errors.push(err(
                        "vpc_id",
                        format!("{vpc:?}"),
                        "is only used with mode = \"import\": remove it or import".into(),
                    ));
                }
                for (key, list) in [
                    ("public_subnets", &self.public_subnets),
                    ("private_subnets", &self.private_subnets),
                ] {
                    if !list.is_empty() {
                        errors.push(err(
                            key,
                            format!("{list:?}"),
                            "is only used with mode = \"import\": remove it or import".into(),
                        ));
                    }
                }
            }
            NetworkMode::Import => {
                match &self.vpc_id {
                    Some(vpc) if is_aws_id(vpc, "vpc-") => {}
                    Some(vpc) => errors.push(err(
                        "vpc_id",
                        format!("{vpc:?}"),
                        "is not a VPC id: use vpc- and 8 or 17 hex digits".into(),
                    )),
                    None => errors.push(err(
                        "vpc_id",
                        "(missing)".into(),
                        "must be set with mode = \"import\": the id of the VPC to use".into(),
                    )),
                }
                for (key, list, what) in [
                    ("public_subnets", &self.public_subnets, "the load balancer"),
                    (
                        "private_subnets",
                        &self.private_subnets,
                        "tasks and the database",
                    ),
                ] {
                    if list.len() < 2 {
                        errors.push(err(
                            key,
                            format!("{list:?}"),
                            format!(
                                "must list at least two subnets in different availability \
                                 zones for {what} with mode = \"import\""
                            ),
                        ));
                    }
                    for id in list.iter().filter(|id| !is_aws_id(id, "subnet-")) {
                        errors.push(err(
                            key,
                            format!("{id:?}"),
                            "is not a subnet id: use subnet- and 8 or 17 hex digits".into(),
                        ));
                    }
                }
                if let Some(cidr) = &self.cidr {
                    errors.push(err(
                        "cidr",
                        format!("{cidr:?}"),
                        "is only used with mode = \"create\": remove it".into(),
                    ));
                }
                let mut all: Vec<&String> = self
                    .public_subnets
                    .iter()
                    .chain(&self.private_subnets)
                    .collect();
                all.sort();
                if let Some(pair) = all.windows(2).find(|w| w[0] == w[1]) {
                    errors.push(err(
                        "private_subnets",
                        format!("{:?}", pair[0]),
                        "appears twice: public and private subnets must all differ".into(),
                    ));
                }
            }
        }
        errors
    }
}

/// Adds the network (nothing in import mode) and returns where other constructs go.
/// `name` (the stack name) prefixes the `Name` tags.
pub fn add(
    template: &mut Template,
    name: &str,
    props: &NetworkProps,
) -> Result<NetworkRefs, StackError> {
    if props.mode == NetworkMode::Import {
        return Ok(NetworkRefs {
            vpc: json!(props.vpc_id.clone().unwrap_or_default()),
            public_subnets: props.public_subnets.iter().map(|s| json!(s)).collect(),
            private_subnets: props.private_subnets.iter().map(|s| json!(s)).collect(),
            public_ready: Vec::new(),
            private_ready: Vec::new(),
        });
    }
    let text = props.cidr.as_deref().unwrap_or("10.0.0.0/16");
    let cidr = parse_cidr(text).map_err(|problem| {
        StackError::InvalidProps(vec![PropError::new(
            CONSTRUCT,
            "stack.network.cidr",
            format!("{text:?}"),
            problem,
        )])
    })?;
    let tag = |suffix: &str| name_tag(json!(format!("{name}-{suffix}")));

    template.add_resource(
        "Vpc",
        Resource::new(
            "AWS::EC2::VPC",
            json!({
                "CidrBlock": text,
                "EnableDnsHostnames": true,
                "EnableDnsSupport": true,
                "Tags": name_tag(json!(name)),
            }),
        ),
    )?;
    template.add_resource(
        "InternetGateway",
        Resource::new("AWS::EC2::InternetGateway", json!({ "Tags": tag("igw") })),
    )?;
    template.add_resource(
        "VpcGatewayAttachment",
        Resource::new(
            "AWS::EC2::VPCGatewayAttachment",
            json!({ "VpcId": ref_("Vpc"), "InternetGatewayId": ref_("InternetGateway") }),
        ),
    )?;

    let mut public_subnets = Vec::new();
    let mut private_subnets = Vec::new();
    let mut public_ready = vec!["PublicDefaultRoute".to_owned()];
    let mut private_ready = vec!["PrivateDefaultRoute".to_owned()];
    for (kind, first_quarter, out, ready) in [
        ("Public", 0, &mut public_subnets, &mut public_ready),
        ("Private", 2, &mut private_subnets, &mut private_ready),
    ] {
        let lower = kind.to_lowercase();
        template.add_resource(
            &format!("{kind}RouteTable"),
            Resource::new(
                "AWS::EC2::RouteTable",
                json!({ "VpcId": ref_("Vpc"), "Tags": tag(&lower) }),
            ),
        )?;
        for n in 1..=2u32 {
            let id = format!("{kind}Subnet{n}");
            template.add_resource(
                &id,
                Resource::new(
                    "AWS::EC2::Subnet",
                    json!({
                        "VpcId": ref_("Vpc"),
                        "CidrBlock": cidr.quarter(first_quarter + n - 1),
                        "AvailabilityZone": select(n as usize - 1, get_azs()),
                        "MapPublicIpOnLaunch": false,
                        "Tags": tag(&format!("{lower}-{n}")),
                    }),
                ),
            )?;
            ready.push(format!("{id}RouteTableAssociation"));
            template.add_resource(
                &format!("{id}RouteTableAssociation"),
                Resource::new(
                    "AWS::EC2::SubnetRouteTableAssociation",
                    json!({
                        "SubnetId": ref_(&id),
                        "RouteTableId": ref_(&format!("{kind}RouteTable")),
                    }),
                ),
            )?;
            out.push(ref_(&id));
        }
    }

    // The route to the internet gateway only works once it is attached to the VPC.
    template.add_resource(
        "PublicDefaultRoute",
        Resource::new(
            "AWS::EC2::Route",
            json!({
                "RouteTableId": ref_("PublicRouteTable"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "GatewayId": ref_("InternetGateway"),
            }),
        )
        .depends_on("VpcGatewayAttachment"),
    )?;
    template.add_resource(
        "NatGatewayEip",
        Resource::new(
            "AWS::EC2::EIP",
            json!({ "Domain": "vpc", "Tags": tag("nat") }),
        )
        .depends_on("VpcGatewayAttachment"),
    )?;
    template.add_resource(
        "NatGateway",
        Resource::new(
            "AWS::EC2::NatGateway",
            json!({
                "AllocationId": get_att("NatGatewayEip", "AllocationId"),
                "SubnetId": ref_("PublicSubnet1"),
                "Tags": tag("nat"),
            }),
        ),
    )?;
    template.add_resource(
        "PrivateDefaultRoute",
        Resource::new(
            "AWS::EC2::Route",
            json!({
                "RouteTableId": ref_("PrivateRouteTable"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "NatGatewayId": ref_("NatGateway"),
            }),
        ),
    )?;

    Ok(NetworkRefs {
        vpc: ref_("Vpc"),
        public_subnets,
        private_subnets,
        public_ready,
        private_ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_cut_into_four_quarters() {
        let cidr = parse_cidr("10.40.0.0/16").unwrap();
        let quarters: Vec<String> = (0..4).map(|i| cidr.quarter(i)).collect();
        assert_eq!(
            quarters,
            [
                "10.40.0.0/18",
                "10.40.64.0/18",
                "10.40.128.0/18",
                "10.40.192.0/18"
            ]
        );
        assert_eq!(
            parse_cidr("192.168.4.0/24").unwrap().quarter(3),
            "192.168.4.192/26"
        );
    }

    #[test]
    fn bad_blocks_say_what_is_wrong() {
        assert!(parse_cidr("10.40.0.0").unwrap_err().contains("a.b.c.d/n"));
        assert!(
            parse_cidr("10.40.0.300/16")
                .unwrap_err()
                .contains("a.b.c.d/n")
        );
        assert!(
            parse_cidr("10.40.0.0/8")
                .unwrap_err()
                .contains("/16 to /24")
        );
        assert!(
            parse_cidr("10.40.1.0/16")
                .unwrap_err()
                .contains("10.40.0.0/16")
        );
    }
}

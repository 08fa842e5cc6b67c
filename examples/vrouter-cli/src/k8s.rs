//! Kubernetes NetworkPolicy YAML, resolved against the config's pod map.
//!
//! The config lists pods (namespace, labels, addresses, and for pods on this node their
//! workload port) and namespace labels; this module reads `NetworkPolicy` documents and
//! resolves their selectors against that map, the job a CNI's control plane does from the
//! API server, and hands the result to `policy::k8s`, which holds the semantics.
//!
//! Selectors: `matchLabels` and `matchExpressions` (`In`, `NotIn`, `Exists`,
//! `DoesNotExist`), ANDed; an empty selector selects everything. `spec.podSelector` picks
//! the pods of the policy's namespace that have a port here (the ones enforced on this
//! node). A peer's `podSelector` alone means pods of the policy's namespace;
//! `namespaceSelector` alone, every pod of the matching namespaces; both, the matching pods
//! of the matching namespaces. Every namespace carries the label
//! `kubernetes.io/metadata.name`, as in Kubernetes. Named ports resolve against the
//! pods' `container_ports` (in `policy::k8s`, as their number depends on the pod).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use vrouter::policy::k8s::{
    ContainerPort, NetworkPolicy, NetworkPolicyPort, NetworkPolicyRule, Peer, PodPorts, PolicyType, PortRef,
    check_port_name, protocol,
};
use vrouter::policy::{AddrSet, Cidr, EndpointId};

/// A pod as the config describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Its namespace.
    pub namespace: String,
    /// Its labels, which pod selectors match.
    pub labels: BTreeMap<String, String>,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// The endpoint (workload port) when the pod is on this node.
    pub endpoint: Option<EndpointId>,
    /// Its named container ports.
    pub named_ports: Vec<ContainerPort>,
}

/// The pods and namespace labels selectors are resolved against.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    /// Every pod policies may select.
    pub pods: Vec<Pod>,
    /// Labels by namespace, which namespace selectors match.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Cluster {
    /// The pods on this node as `policy::k8s::compile` takes them, all in `vrf`.
    pub fn local_endpoints(&self, vrf: u32) -> Vec<(EndpointId, u32, Vec<IpAddr>)> {
        self.pods
            .iter()
            .filter_map(|p| p.endpoint.map(|e| (e, vrf, p.addrs.clone())))
            .collect()
    }

    /// The pods' named ports as `policy::k8s::compile` takes them.
    pub fn named_ports(&self) -> Vec<PodPorts> {
        self.pods
            .iter()
            .filter(|p| !p.named_ports.is_empty())
            .map(|p| PodPorts {
                endpoint: p.endpoint,
                addrs: p.addrs.clone(),
                ports: p.named_ports.clone(),
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    api_version: String,
    kind: String,
    metadata: Meta,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    pod_selector: Selector,
    #[serde(default)]
    policy_types: Option<Vec<String>>,
    #[serde(default)]
    ingress: Option<Vec<RuleYaml>>,
    #[serde(default)]
    egress: Option<Vec<RuleYaml>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleYaml {
    #[serde(default)]
    from: Option<Vec<PeerYaml>>,
    #[serde(default)]
    to: Option<Vec<PeerYaml>>,
    #[serde(default)]
    ports: Option<Vec<PortYaml>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PeerYaml {
    pod_selector: Option<Selector>,
    namespace_selector: Option<Selector>,
    ip_block: Option<IpBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IpBlock {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortYaml {
    protocol: Option<String>,
    port: Option<IntOrString>,
    end_port: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Expression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

impl Selector {
    /// Checks the operators once, so matching cannot fail.
    fn check(&self) -> Result<(), String> {
        for (i, e) in self.match_expressions.iter().enumerate() {
            let bad = |why: &str| Err(format!("matchExpressions[{i}]: {why}"));
            match (e.operator.as_str(), e.values.is_empty()) {
                ("In" | "NotIn", true) => return bad("`In` and `NotIn` need values"),
                ("Exists" | "DoesNotExist", false) => return bad("`Exists` and `DoesNotExist` take no values"),
                ("In" | "NotIn" | "Exists" | "DoesNotExist", _) => {}
                (o, _) => return bad(&format!("operator `{o}` is not In, NotIn, Exists or DoesNotExist")),
            }
        }
        Ok(())
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let v = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => v.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => v.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => v.is_some(),
                    _ => v.is_none(),
                }
            })
    }
}

impl Cluster {
    fn namespace_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut l = self.namespaces.get(ns).cloned().unwrap_or_default();
        l.insert("kubernetes.io/metadata.name".into(), ns.into());
        l
    }

    /// The addresses of the pods a peer selects.
    fn peer_addrs(&self, ns: &str, pods: Option<&Selector>, nss: Option<&Selector>) -> Arc<AddrSet> {
        let cidrs: Vec<Cidr> = self
            .pods
            .iter()
            .filter(|p| match nss {
                None => p.namespace == ns,
                Some(s) => s.matches(&self.namespace_labels(&p.namespace)),
            })
            .filter(|p| pods.is_none_or(|s| s.matches(&p.labels)))
            .flat_map(|p| p.addrs.iter().map(|a| Cidr::host(*a)))
            .collect();
        Arc::new(AddrSet::from_cidrs(&cidrs))
    }
}

/// Reads every document of `text` (a file named `name`) as a NetworkPolicy resolved
/// against `cluster`. Errors name the file, the policy and the field (YAML syntax and type
/// errors also the line).
pub fn read(name: &str, text: &str, cluster: &Cluster) -> Result<Vec<NetworkPolicy>, String> {
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = Doc::deserialize(de).map_err(|e| format!("{name}: document {}: {e}", i + 1))?;
        let what = format!("{name}: NetworkPolicy `{}`", doc.metadata.name);
        if doc.kind != "NetworkPolicy" || !doc.api_version.starts_with("networking.k8s.io/") {
            return Err(format!(
                "{name}: document {}: `{}` `{}` is not a networking.k8s.io NetworkPolicy",
                i + 1,
                doc.api_version,
                doc.kind
            ));
        }
        let spec = doc.spec.ok_or_else(|| format!("{what}: field `spec`: missing"))?;
        let ns = doc.metadata.namespace.unwrap_or_else(|| "default".into());
        out.push(resolve(&what, &ns, doc.metadata.name, spec, cluster)?);
    }
    Ok(out)
}

fn resolve(what: &str, ns: &str, name: String, spec: Spec, cluster: &Cluster) -> Result<NetworkPolicy, String> {
    let err = |field: &str, why: String| format!("{what}: field `spec.{field}`: {why}");
    spec.pod_selector.check().map_err(|w| err("podSelector", w))?;
    let selected = cluster
        .pods
        .iter()
        .filter(|p| p.namespace == ns && spec.pod_selector.matches(&p.labels))
        .filter_map(|p| p.endpoint)
        .collect();
    let policy_types = spec
        .policy_types
        .map(|types| {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str() {
                    "Ingress" => Ok(PolicyType::Ingress),
                    "Egress" => Ok(PolicyType::Egress),
                    o => Err(err(
                        &format!("policyTypes[{i}]"),
                        format!("`{o}` is not Ingress or Egress"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let rules = |list: Option<Vec<RuleYaml>>, dir: &str, peers_key: &str| -> Result<Vec<_>, String> {
        let mut out = Vec::new();
        for (i, r) in list.unwrap_or_default().into_iter().enumerate() {
            let at = format!("{dir}[{i}]");
            let (peers, wrong) = if dir == "ingress" {
                (r.from, r.to)
            } else {
                (r.to, r.from)
            };
            if wrong.is_some() {
                let other = if dir == "ingress" { "to" } else { "from" };
                return Err(err(
                    &at,
                    format!("`{other}` does not belong in an {dir} rule (use `{peers_key}`)"),
                ));
            }
            let mut rule = NetworkPolicyRule::default();
            for (j, p) in peers.unwrap_or_default().into_iter().enumerate() {
                let at = format!("{at}.{peers_key}[{j}]");
                rule.peers
                    .push(peer(cluster, ns, p).map_err(|(f, w)| err(&format!("{at}{f}"), w))?);
            }
            for (j, p) in r.ports.unwrap_or_default().into_iter().enumerate() {
                let at = format!("{at}.ports[{j}]");
                rule.ports.push(port(p).map_err(|(f, w)| err(&format!("{at}{f}"), w))?);
            }
            out.push(rule);
        }
        Ok(out)
    };
    let ingress = rules(spec.ingress, "ingress", "from")?;
    let egress = rules(spec.egress, "egress", "to")?;
    Ok(NetworkPolicy {
        name,
        selected,
        policy_types,
        ingress,
        egress,
    })
}

/// One `from`/`to` entry; errors carry the sub-field.
fn peer(cluster: &Cluster, ns: &str, p: PeerYaml) -> Result<Peer, (String, String)> {
    match (p.ip_block, p.pod_selector, p.namespace_selector) {
        (Some(b), None, None) => {
            let cidr = |s: &str, f: &str| s.parse::<Cidr>().map_err(|e| (f.to_string(), format!("`{s}`: {e}")));
            Ok(Peer::IpBlock {
                cidr: cidr(&b.cidr, ".ipBlock.cidr")?,
                except: b
                    .except
                    .iter()
                    .enumerate()
                    .map(|(k, c)| cidr(c, &format!(".ipBlock.except[{k}]")))
                    .collect::<Result<_, _>>()?,
            })
        }
        (Some(_), _, _) => Err((String::new(), "`ipBlock` cannot be combined with a selector".into())),
        (None, None, None) => Err((
            String::new(),
            "needs `podSelector`, `namespaceSelector` or `ipBlock`".into(),
        )),
        (None, pods, nss) => {
            for (s, f) in [(&pods, ".podSelector"), (&nss, ".namespaceSelector")] {
                if let Some(s) = s {
                    s.check().map_err(|w| (f.to_string(), w))?;
                }
            }
            Ok(Peer::Selected(cluster.peer_addrs(ns, pods.as_ref(), nss.as_ref())))
        }
    }
}

/// One `ports` entry; errors carry the sub-field.
fn port(p: PortYaml) -> Result<NetworkPolicyPort, (String, String)> {
    let name = p.protocol.unwrap_or_else(|| "TCP".into());
    let protocol = protocol(&name).ok_or_else(|| (".protocol".into(), format!("`{name}` is not TCP, UDP or SCTP")))?;
    let number = |v: i64, f: &str| {
        u16::try_from(v)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| (f.to_string(), format!("{v} is not a port (1-65535)")))
    };
    let port = match p.port {
        None => None,
        Some(IntOrString::Int(v)) => Some(PortRef::Number(number(v, ".port")?)),
        Some(IntOrString::Str(s)) => match s.parse::<i64>() {
            Ok(v) => Some(PortRef::Number(number(v, ".port")?)),
            Err(_) => {
                check_port_name(&s).map_err(|w| (".port".to_string(), w))?;
                Some(PortRef::Name(s))
            }
        },
    };
    let end_port = p.end_port.map(|v| number(v, ".endPort")).transpose()?;
    match (&port, end_port) {
        (None, Some(_)) => return Err((".endPort".into(), "needs `port`".into())),
        (Some(PortRef::Name(_)), Some(_)) => return Err((".endPort".into(), "needs a numeric `port`".into())),
        _ => {}
    }
    Ok(NetworkPolicyPort {
        protocol,
        port,
        end_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter::policy::{Fields, Policy};
    use vrouter::wire::flow::FlowKey;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pod(ns: &str, labels: &[(&str, &str)], addr: &str, endpoint: Option<u32>, named: &[(&str, u16)]) -> Pod {
        Pod {
            namespace: ns.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            addrs: vec![ip(addr)],
            endpoint: endpoint.map(EndpointId),
            named_ports: named
                .iter()
                .map(|&(name, port)| ContainerPort {
                    name: name.into(),
                    protocol: 6,
                    port,
                })
                .collect(),
        }
    }

    /// db (local, endpoint 1, `postgres` on 5432) and web (local, endpoint 2, `http` on
    /// 8080) in `prod`; a remote web pod in `prod` (`http` on 80); a monitoring pod in
    /// `ops` (namespace labelled team=ops); a pod in `dev`.
    fn cluster() -> Cluster {
        let front = [("app", "web"), ("tier", "front")];
        Cluster {
            pods: vec![
                pod("prod", &[("app", "db")], "10.0.1.2", Some(1), &[("postgres", 5432)]),
                pod("prod", &front, "10.0.2.2", Some(2), &[("http", 8080)]),
                pod("prod", &front, "10.9.0.5", None, &[("http", 80)]),
                pod("ops", &[("app", "prometheus")], "10.0.3.2", None, &[]),
                pod("dev", &[("app", "web")], "10.0.4.2", None, &[]),
            ],
            namespaces: [("ops".to_string(), [("team".to_string(), "ops".to_string())].into())].into(),
        }
    }

    /// Whether a TCP connection from `src` to `dst`:`port` is allowed under `yaml`.
    fn allowed(yaml: &str, src: &str, dst: &str, port: u16) -> bool {
        let c = cluster();
        let policies = read("test.yaml", yaml, &c).unwrap();
        let set = vrouter::policy::k8s::compile(&c.local_endpoints(1), &policies, &c.named_ports(), &[]).unwrap();
        let (p, _) = Policy::compile(&set, 1).unwrap();
        let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
            unreachable!("IPv4 test addresses")
        };
        let key = FlowKey::v4(s, d, 6, 40000, port).with_vrf(1);
        p.evaluate(&Fields::from_key(&key, None)).allow
    }

    const DB_POLICY: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-access
  namespace: prod
spec:
  podSelector:
    matchLabels:
      app: db
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchExpressions:
              - { key: tier, operator: In, values: [front] }
        - namespaceSelector:
            matchLabels: { team: ops }
          podSelector:
            matchLabels: { app: prometheus }
        - ipBlock:
            cidr: 192.168.0.0/16
            except: [192.168.1.0/24]
      ports:
        - protocol: TCP
          port: 5432
        - port: 9100
          endPort: 9102
"#;

    #[test]
    fn selectors_resolve_against_the_pod_map() {
        // Front-end pods of prod, local or remote, reach the database port.
        assert!(allowed(DB_POLICY, "10.0.2.2", "10.0.1.2", 5432));
        assert!(allowed(DB_POLICY, "10.9.0.5", "10.0.1.2", 5432));
        assert!(!allowed(DB_POLICY, "10.0.2.2", "10.0.1.2", 22), "another port");
        // A web pod of another namespace is not selected by a bare podSelector.
        assert!(!allowed(DB_POLICY, "10.0.4.2", "10.0.1.2", 5432));
        // Prometheus in the ops namespace (by namespace label), port range.
        assert!(allowed(DB_POLICY, "10.0.3.2", "10.0.1.2", 9101));
        // ipBlock with except.
        assert!(allowed(DB_POLICY, "192.168.7.1", "10.0.1.2", 5432));
        assert!(!allowed(DB_POLICY, "192.168.1.1", "10.0.1.2", 5432));
        // The web pod is selected by no policy: open.
        assert!(allowed(DB_POLICY, "10.0.4.2", "10.0.2.2", 22));
    }

    #[test]
    fn several_documents_and_a_default_deny() {
        let deny_all = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: default-deny, namespace: prod }
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: web-from-anywhere, namespace: prod }
spec:
  podSelector:
    matchExpressions:
      - { key: app, operator: Exists }
      - { key: app, operator: NotIn, values: [db] }
  ingress:
    - ports: [{ port: "80" }]
"#;
        assert!(!allowed(deny_all, "10.0.2.2", "10.0.1.2", 5432), "db isolated");
        assert!(allowed(deny_all, "10.0.4.2", "10.0.2.2", 80), "web open on 80");
        assert!(!allowed(deny_all, "10.0.4.2", "10.0.2.2", 81));
    }

    #[test]
    fn named_ports_are_each_pods_own_number() {
        let named = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: by-name, namespace: prod }
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
    - ports: [{ port: postgres }, { port: http }]
  egress:
    - to: [{ podSelector: { matchLabels: { app: web } } }]
      ports: [{ protocol: TCP, port: http }]
"#;
        // Ingress: the selected pod's own number for each name.
        assert!(allowed(named, "10.0.4.2", "10.0.1.2", 5432), "db's postgres");
        assert!(!allowed(named, "10.0.4.2", "10.0.1.2", 8080), "web's http, not db's");
        assert!(allowed(named, "10.0.4.2", "10.0.2.2", 8080), "web's http");
        assert!(
            !allowed(named, "10.0.4.2", "10.0.2.2", 5432),
            "db's postgres, not web's"
        );
        // Egress: the destination pod's number.
        assert!(allowed(named, "10.0.1.2", "10.9.0.5", 80), "the remote web pod's http");
        assert!(
            !allowed(named, "10.0.1.2", "10.9.0.5", 8080),
            "the local web pod's number"
        );
        assert!(!allowed(named, "10.0.1.2", "10.0.4.2", 80), "a web pod of dev: no peer");
    }

    #[test]
    fn bad_yaml_names_file_policy_field_and_reason() {
        let head =
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: p }\nspec:\n  podSelector: {}\n";
        let cases = [
            ("spec: [", "test.yaml: document 1: "),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: { name: p }\n",
                "`v1` `Pod` is not a networking.k8s.io NetworkPolicy",
            ),
            (
                &format!("{head}  ingress:\n    - ports: [{{ port: Http }}]\n"),
                "NetworkPolicy `p`: field `spec.ingress[0].ports[0].port`: `Http` is not a port name",
            ),
            (
                &format!("{head}  ingress:\n    - ports: [{{ port: http, endPort: 90 }}]\n"),
                "field `spec.ingress[0].ports[0].endPort`: needs a numeric `port`",
            ),
            (
                &format!("{head}  ingress:\n    - ports: [{{ protocol: ICMP, port: 1 }}]\n"),
                "field `spec.ingress[0].ports[0].protocol`: `ICMP` is not TCP, UDP or SCTP",
            ),
            (
                &format!("{head}  ingress:\n    - ports: [{{ port: 70000 }}]\n"),
                "field `spec.ingress[0].ports[0].port`: 70000 is not a port",
            ),
            (
                &format!("{head}  egress:\n    - from: [{{ ipBlock: {{ cidr: 10.0.0.0/8 }} }}]\n"),
                "field `spec.egress[0]`: `from` does not belong in an egress rule (use `to`)",
            ),
            (
                &format!("{head}  egress:\n    - to: [{{ ipBlock: {{ cidr: 10.0.0.1/8 }} }}]\n"),
                "field `spec.egress[0].to[0].ipBlock.cidr`: `10.0.0.1/8`",
            ),
            (
                &format!("{head}  ingress:\n    - from: [{{}}]\n"),
                "field `spec.ingress[0].from[0]`: needs `podSelector`, `namespaceSelector` or `ipBlock`",
            ),
            (
                &format!(
                    "{head}  ingress:\n    - from: [{{ podSelector: {{ matchExpressions: [{{ key: a, operator: Near }}] }} }}]\n"
                ),
                "field `spec.ingress[0].from[0].podSelector`: matchExpressions[0]: operator `Near`",
            ),
            (
                &format!("{head}  policyTypes: [Inbound]\n"),
                "field `spec.policyTypes[0]`: `Inbound` is not Ingress or Egress",
            ),
            (&format!("{head}  ingres: []\n"), "unknown field `ingres`"),
        ];
        for (yaml, want) in cases {
            let e = read("test.yaml", yaml, &cluster()).unwrap_err();
            assert!(e.contains(want), "{yaml}\n=> {e}\nwanted {want}");
        }
    }

    /// Values that probe the checks: wrong types, out of range, malformed, empty.
    const ODD_VALUES: &[&str] = &[
        "0",
        "-1",
        "65536",
        "4294967296",
        "1.5",
        "true",
        "null",
        "\"\"",
        "[]",
        "{}",
        "[1, 2]",
        "{ a: b }",
        "10.0.0.0/33",
        "10.0.0.1/8",
        "::/129",
        "http",
        "ICMP",
        "Egress",
        "NotIn",
        "Exists",
        "\"a b\"",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// DB_POLICY with some values replaced by odd ones is refused with a message
        /// naming the file, or accepted and compiled, and never panics.
        #[test]
        fn odd_values_are_refused_or_accepted_never_a_panic(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), 0..ODD_VALUES.len()),
                1..4,
            )
        ) {
            let mut lines: Vec<String> = DB_POLICY.lines().map(str::to_string).collect();
            let values: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].trim_end().len() > lines[i].find(": ").map_or(usize::MAX, |c| c + 1))
                .collect();
            for (at, v) in edits {
                let i = values[at.index(values.len())];
                let key = lines[i][..lines[i].find(": ").unwrap()].to_string();
                lines[i] = format!("{key}: {}", ODD_VALUES[v]);
            }
            let c = cluster();
            match read("odd.yaml", &lines.join("\n"), &c) {
                Ok(policies) => {
                    if let Ok(set) = vrouter::policy::k8s::compile(&c.local_endpoints(1), &policies, &c.named_ports(), &[]) {
                        let _ = Policy::compile(&set, 1);
                    }
                }
                Err(e) => proptest::prop_assert!(e.starts_with("odd.yaml"), "{e}"),
            }
        }
    }
}

//! The deployment files: the Kubernetes manifests under `k8s/` and the kustomize
//! overlays as they render, checked offline against the Kubernetes schemas, against the
//! code's own config validation and against the paths the server serves; and the
//! Dockerfile's structure (building it needs base images from the internet, so it is
//! not built here).
//!
//! Tools: `kubectl kustomize` renders the overlays; the Python package
//! `kubernetes-validate` (pinned in `scripts/install-deps.sh`) validates with the
//! Kubernetes JSON schemas it ships, offline. It is run as `python3 -m
//! kubernetes_validate`, and its dependency PyYAML turns the YAML into JSON for the
//! assertions here (kubectl cannot convert YAML without a cluster, and the project has
//! no YAML crate), so both are in the one interpreter the install step used.
//!
//! The ServiceMonitor and the PrometheusRule are custom resources of the Prometheus
//! Operator: no Kubernetes schema covers them, and the validator only warns about kinds
//! it has no schema for. Every other document must pass strict validation, a warning
//! about any other kind fails the test, the ServiceMonitor is checked against the
//! Service it selects, and the PrometheusRule and the dashboard ConfigMap against the
//! files of `monitoring/` they are made from (`monitoring.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use promql_frontend::Config;
use serde_json::Value;

use crate::support::{Scratch, bed, get, require_binary, start_frontend};

/// The kustomizations a user can apply (`kubectl apply -k`).
const KUSTOMIZATIONS: &[&str] = &[
    "k8s/base",
    "k8s/overlays/redis",
    "k8s/overlays/servicemonitor",
];

/// Kubernetes versions the manifests are validated against: 1.30 is the oldest that has
/// the preStop `sleep` action (the image has no shell to run `sleep`), 1.37 the newest
/// the pinned validator ships schemas for.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// API group of the Prometheus Operator's custom resources (no Kubernetes schema).
const OPERATOR_GROUP: &str = "monitoring.coreos.com/";

/// Name of the frontend's Deployment and Service.
const FRONTEND: &str = "promql-frontend";

/// Name of the ConfigMap holding the Grafana dashboard.
pub const DASHBOARD_CONFIGMAP: &str = "promql-frontend-dashboard";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with an install hint unless kubectl and the pinned validator are there.
pub fn require_tools() {
    // kubectl is not in Debian's archive, so require_binary's apt hint would mislead.
    let kubectl = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("kubectl").is_file())
    });
    assert!(
        kubectl,
        "`kubectl` is not installed; the deployment tests render the overlays with \
         `kubectl kustomize` (https://kubernetes.io/docs/tasks/tools/)"
    );
    require_binary("python3", "python3");
    let found = Command::new("python3")
        .args(["-c", "import kubernetes_validate, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the Python package kubernetes-validate is not installed for python3; \
         run scripts/install-deps.sh (it installs the pinned version with pip)"
    );
}

/// Runs a command to completion, failing the test with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `kubectl kustomize DIR`, written to `scratch/<last path component>.yaml`.
pub fn render(kustomization: &str, scratch: &Scratch) -> PathBuf {
    let yaml = run(Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(kustomization)));
    let name = Path::new(kustomization)
        .file_name()
        .expect("kustomization dir name")
        .to_string_lossy();
    let path = scratch.0.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write rendered manifests");
    path
}

/// Every overlay rendered: (kustomization dir, rendered file, its documents).
fn rendered(scratch: &Scratch) -> Vec<(&'static str, PathBuf, Vec<Value>)> {
    KUSTOMIZATIONS
        .iter()
        .map(|k| {
            let path = render(k, scratch);
            let docs = yaml_documents(&path);
            (*k, path, docs)
        })
        .collect()
}

/// The documents of a YAML file, as JSON (through PyYAML's safe loader).
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml
with open(sys.argv[1]) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
json.dump(docs, sys.stdout)";
    let json = run(Command::new("python3").args(["-c", SCRIPT]).arg(path));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every manifest file under k8s/: the `.yaml` files that are not kustomizations.
fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read k8s dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && path.file_name().is_some_and(|n| n != "kustomization.yaml")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("k8s"), &mut files);
    files.sort();
    files
}

pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn is_operator_resource(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with(OPERATOR_GROUP))
}

/// The one document of `kind` named `name`.
pub fn find<'a>(docs: &'a [Value], kind_: &str, name_: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == kind_ && name(d) == name_)
        .collect();
    assert_eq!(found.len(), 1, "expected one {kind_} {name_}");
    found[0]
}

/// The frontend's container in its Deployment.
fn frontend_container(docs: &[Value]) -> &Value {
    let containers = find(docs, "Deployment", FRONTEND)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("Deployment has containers");
    containers
        .iter()
        .find(|c| c["name"] == FRONTEND)
        .expect("a container named promql-frontend")
}

/// A port given by name or number, as a number, using the container's named ports.
fn resolve_port(port: &Value, container: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let port_name = port.as_str().expect("port is a name or a number");
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port_name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("the container has no port named {port_name}"))
}

/// The TOML config the frontend container reads: the `--config` path in its args must
/// be a key of the ConfigMap mounted at that path's directory. Returns (key, TOML).
fn frontend_config(docs: &[Value]) -> (String, String) {
    let container = frontend_container(docs);
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("container args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1).copied())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--config=")))
        .expect("the container passes --config");
    let pod = &find(docs, "Deployment", FRONTEND)["spec"]["template"]["spec"];
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| {
            m["subPath"].is_null()
                && m["mountPath"]
                    .as_str()
                    .is_some_and(|dir| path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')))
        })
        .unwrap_or_else(|| panic!("no volume is mounted at the directory of {path}"));
    let mount_path = mount["mountPath"].as_str().expect("mountPath");
    let key = path[mount_path.len()..].trim_start_matches('/');
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume is declared");
    assert!(
        volume["configMap"]["items"].is_null(),
        "items would remap the keys"
    );
    let configmap_name = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("the volume at {mount_path} is not a ConfigMap"));
    let configmap = find(docs, "ConfigMap", configmap_name);
    let toml = configmap["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {configmap_name} has no key {key}"));
    (key.to_owned(), toml.to_owned())
}

/// `promql-frontend --config FILE --check-config`, without the caller's overrides.
fn check_config(file: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promql-frontend"));
    for (var, _) in std::env::vars() {
        if var.starts_with(promql_frontend::config::ENV_PREFIX) {
            cmd.env_remove(var);
        }
    }
    cmd.arg("--config")
        .arg(file)
        .arg("--check-config")
        .output()
        .expect("run promql-frontend --check-config")
}

#[test]
fn manifests_and_rendered_overlays_pass_kubernetes_schema_validation() {
    require_tools();
    let scratch = Scratch::new("deploy-validate");
    let mut files = manifest_files();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("k8s/base/deployment.yaml")),
        "manifest files found: {files:?}"
    );
    files.extend(KUSTOMIZATIONS.iter().map(|k| render(k, &scratch)));
    let mut expected_passes = 0;
    for file in &files {
        let docs = yaml_documents(file);
        assert!(!docs.is_empty(), "{} has no documents", file.display());
        expected_passes += docs.iter().filter(|d| !is_operator_resource(d)).count();
    }
    for version in KUBERNETES_VERSIONS {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "-k", version])
            .args(&files)
            .output()
            .expect("run python3 -m kubernetes_validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version} failed:\n{text}"
        );
        // Warnings are for kinds without a schema: only the operator's are expected.
        let other_warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("WARN") && !l.contains(OPERATOR_GROUP))
            .collect();
        assert!(
            other_warnings.is_empty(),
            "unexpected warnings for Kubernetes {version}:\n{}",
            other_warnings.join("\n")
        );
        let passed = text
            .lines()
            .filter(|l| l.starts_with("INFO") && l.contains(" passed for resource "))
            .count();
        assert_eq!(
            passed, expected_passes,
            "every document but the operator's must pass for Kubernetes {version}:\n{text}"
        );
    }
}

#[test]
fn overlays_render_the_resources_they_promise() {
    require_tools();
    let scratch = Scratch::new("deploy-kinds");
    let expected: BTreeMap<&str, &[(&str, &str)]> = BTreeMap::from([
        (
            "k8s/base",
            &[
                ("Deployment", FRONTEND),
                ("Service", FRONTEND),
                ("PodDisruptionBudget", FRONTEND),
                ("HorizontalPodAutoscaler", FRONTEND),
            ][..],
        ),
        (
            "k8s/overlays/redis",
            &[
                ("Deployment", FRONTEND),
                ("Service", FRONTEND),
                ("PodDisruptionBudget", FRONTEND),
                ("HorizontalPodAutoscaler", FRONTEND),
                ("Deployment", "promql-frontend-redis"),
                ("Service", "promql-frontend-redis"),
            ][..],
        ),
        (
            "k8s/overlays/servicemonitor",
            &[
                ("Deployment", FRONTEND),
                ("Service", FRONTEND),
                ("PodDisruptionBudget", FRONTEND),
                ("HorizontalPodAutoscaler", FRONTEND),
                ("ServiceMonitor", FRONTEND),
                ("PrometheusRule", FRONTEND),
            ][..],
        ),
    ]);
    for (kustomization, _, docs) in rendered(&scratch) {
        let want = expected[kustomization];
        let mut got: Vec<(&str, &str)> = docs
            .iter()
            .filter(|d| kind(d) != "ConfigMap")
            .map(|d| (kind(d), name(d)))
            .collect();
        got.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(got, want, "{kustomization}");
        let configmaps: Vec<&str> = docs
            .iter()
            .filter(|d| kind(d) == "ConfigMap")
            .map(name)
            .filter(|n| *n != DASHBOARD_CONFIGMAP)
            .collect();
        assert_eq!(
            configmaps.len(),
            1,
            "{kustomization}: one ConfigMap besides the dashboard, the config: {configmaps:?}"
        );
        let dashboards = docs
            .iter()
            .filter(|d| kind(d) == "ConfigMap" && name(d) == DASHBOARD_CONFIGMAP)
            .count();
        let monitored = kustomization.ends_with("servicemonitor");
        assert_eq!(
            dashboards,
            usize::from(monitored),
            "{kustomization}: the dashboard ConfigMap comes with the monitoring component"
        );
        let deployment = find(&docs, "Deployment", FRONTEND);
        assert_eq!(deployment["spec"]["replicas"], 2, "{kustomization}");
        let hpa = find(&docs, "HorizontalPodAutoscaler", FRONTEND);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], FRONTEND);
        assert_eq!(hpa["spec"]["minReplicas"], 2, "{kustomization}");
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["name"], "cpu",
            "{kustomization}"
        );
        let pdb = find(&docs, "PodDisruptionBudget", FRONTEND);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
            "{kustomization}: the PodDisruptionBudget covers the frontend pods"
        );
        for doc in &docs {
            assert_eq!(
                doc["metadata"]["namespace"],
                "monitoring",
                "{kustomization}: {} {} is in the namespace of Thanos Query",
                kind(doc),
                name(doc)
            );
        }
    }
}

#[test]
fn every_container_runs_as_non_root_on_a_read_only_root_filesystem() {
    require_tools();
    let scratch = Scratch::new("deploy-security");
    let mut checked = 0;
    for (kustomization, _, docs) in rendered(&scratch) {
        for deployment in docs.iter().filter(|d| kind(d) == "Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            let what = format!("{kustomization}: Deployment {}", name(deployment));
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            let uid = pod["securityContext"]["runAsUser"].as_u64();
            assert!(uid.is_some_and(|u| u > 0), "{what}: numeric non-root user");
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            for c in pod["containers"].as_array().expect("containers") {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{what}"
                );
                assert!(
                    c["resources"]["requests"]["cpu"].is_string()
                        && c["resources"]["requests"]["memory"].is_string()
                        && c["resources"]["limits"]["memory"].is_string(),
                    "{what}: CPU and memory requests and a memory limit"
                );
                checked += 1;
            }
        }
    }
    // Three frontends and the Redis of the redis overlay.
    assert_eq!(checked, 4, "containers checked");
    let base = yaml_documents(&render("k8s/base", &scratch));
    let pod = &find(&base, "Deployment", FRONTEND)["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"]["runAsUser"].as_u64(),
        Some(dockerfile_user()),
        "the frontend runs as the image's user"
    );
}

#[test]
fn configmap_config_is_the_file_the_frontend_reads_and_passes_check_config() {
    require_tools();
    let scratch = Scratch::new("deploy-config");
    for (kustomization, _, docs) in rendered(&scratch) {
        let (key, toml) = frontend_config(&docs);
        assert!(key.ends_with(".toml"), "{kustomization}: {key}");
        let file = scratch
            .0
            .join(format!("{}.toml", kustomization.replace('/', "_")));
        std::fs::write(&file, &toml).expect("write config");
        let out = check_config(&file);
        assert!(
            out.status.success(),
            "{kustomization}: promql-frontend --check-config rejected the ConfigMap's {key} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let config = Config::from_toml_str(&toml).expect("config parses in process too");
        let want_backend = if kustomization.ends_with("redis") {
            promql_frontend::config::CacheBackendKind::Redis
        } else {
            promql_frontend::config::CacheBackendKind::Memory
        };
        assert_eq!(config.cache.backend, want_backend, "{kustomization}");
        assert!(
            config.slow_query_log.path.is_none(),
            "{kustomization}: the root filesystem is read-only: slow queries go to stderr"
        );
    }
}

#[test]
fn termination_grace_period_covers_prestop_and_drain() {
    require_tools();
    let scratch = Scratch::new("deploy-grace");
    for (kustomization, _, docs) in rendered(&scratch) {
        let (_, toml) = frontend_config(&docs);
        let config = Config::from_toml_str(&toml).expect("config is valid");
        let pod = &find(&docs, "Deployment", FRONTEND)["spec"]["template"]["spec"];
        let termination = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds is set");
        let pre_stop = frontend_container(&docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .expect("a preStop sleep");
        let drain = config.server.grace_period.as_secs_f64();
        // The margin covers the process's own exit after the drain and a slow kubelet.
        assert!(
            (pre_stop as f64) + drain + 5.0 <= termination as f64,
            "{kustomization}: preStop {pre_stop}s + server.grace_period {drain}s + 5s margin \
             exceeds terminationGracePeriodSeconds {termination}"
        );
        assert!(pre_stop > 0, "{kustomization}: endpoints need time to go");
    }
}

#[tokio::test]
async fn probe_and_scrape_paths_are_served_on_the_configured_port() {
    require_tools();
    let scratch = Scratch::new("deploy-probes");
    let renders = rendered(&scratch);
    let tb = bed().await;
    for (kustomization, _, docs) in &renders {
        let container = frontend_container(docs);
        let (_, toml) = frontend_config(docs);
        let mut config = Config::from_toml_str(&toml).expect("config is valid");
        let listen_port = u64::from(config.server.listen.port());

        let mut paths = Vec::new();
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &container[probe]["httpGet"];
            let path = get["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{kustomization}: {probe} is an HTTP GET"));
            assert!(
                get["scheme"].is_null() || get["scheme"] == "HTTP",
                "{kustomization}: {probe} scheme"
            );
            assert_eq!(
                resolve_port(&get["port"], container),
                listen_port,
                "{kustomization}: {probe} port is server.listen's"
            );
            paths.push(path.to_owned());
        }
        let service = find(docs, "Service", FRONTEND);
        let service_ports = service["spec"]["ports"].as_array().expect("Service ports");
        assert!(!service_ports.is_empty(), "{kustomization}: Service ports");
        for port in service_ports {
            assert_eq!(
                resolve_port(&port["targetPort"], container),
                listen_port,
                "{kustomization}: Service targetPort is server.listen's"
            );
        }
        for monitor in docs.iter().filter(|d| kind(d) == "ServiceMonitor") {
            for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
                paths.push(endpoint["path"].as_str().unwrap_or("/metrics").to_owned());
            }
        }

        // The config as deployed, but against the test bed's Prometheus (Thanos Query's
        // stand-in; /-/ready needs a querier that answers) and on a loopback port.
        config.downstream.url = tb.prom_url.clone();
        config.downstream.urls.clear();
        let fe = start_frontend(config).await;
        for path in &paths {
            let reply = get(&format!("{}{path}", fe.url)).await;
            assert_eq!(
                reply.status,
                200,
                "{kustomization}: GET {path}: {}",
                reply.text()
            );
        }
        fe.shutdown().await.expect("frontend shuts down");
    }
}

#[test]
fn service_monitor_selects_the_frontend_service_by_port_name() {
    require_tools();
    let scratch = Scratch::new("deploy-servicemonitor");
    let path = render("k8s/overlays/servicemonitor", &scratch);
    let docs = yaml_documents(&path);
    let monitor = find(&docs, "ServiceMonitor", FRONTEND);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service = find(&docs, "Service", FRONTEND);
    assert_eq!(
        monitor["metadata"]["namespace"], service["metadata"]["namespace"],
        "without a namespaceSelector a ServiceMonitor only sees its own namespace"
    );
    assert!(monitor["spec"]["namespaceSelector"].is_null());
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!selector.is_empty(), "an empty selector selects everything");
    for (label, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][label], value,
            "the Service carries the selected label {label}"
        );
    }
    let port_names: Vec<&str> = service["spec"]["ports"]
        .as_array()
        .expect("Service ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
    assert!(!endpoints.is_empty(), "ServiceMonitor endpoints");
    for endpoint in endpoints {
        let port = endpoint["port"].as_str().expect("endpoint port by name");
        assert!(
            port_names.contains(&port),
            "endpoint port {port} is one of the Service's {port_names:?}"
        );
        assert_eq!(endpoint["path"], "/metrics");
    }
}

/// The Dockerfile's stages as (FROM line, instructions), continuation lines joined.
fn dockerfile_stages() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<(String, Vec<String>)> = Vec::new();
    for i in instructions.into_iter().filter(|i| !i.is_empty()) {
        if i.starts_with("FROM ") {
            stages.push((i, Vec::new()));
        } else {
            stages
                .last_mut()
                .expect("an instruction before the first FROM")
                .1
                .push(i);
        }
    }
    stages
}

#[test]
fn dockerfile_builds_release_runs_non_root_and_checks_its_config() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let (build_from, build) = &stages[0];
    assert!(build_from.contains(" AS build"), "{build_from}");
    assert!(
        build
            .iter()
            .any(|i| i.starts_with("RUN ") && i.contains("cargo build --release --locked")),
        "release build with the lock file: {build:?}"
    );
    let (runtime_from, runtime) = stages.last().expect("runtime stage");
    assert!(
        runtime_from.contains("distroless/cc"),
        "small runtime image: {runtime_from}"
    );
    let find_instr = |prefix: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter_map(|i| i.strip_prefix(prefix))
            .collect()
    };
    assert!(dockerfile_user() > 0, "USER is not root");
    let entry = find_instr("ENTRYPOINT ");
    let cmd = find_instr("CMD ");
    assert_eq!(entry, vec![r#"["/promql-frontend"]"#]);
    let cmd: Vec<String> = serde_json::from_str(cmd.first().expect("CMD")).expect("CMD exec form");
    assert_eq!(cmd[0], "--config");
    let config_path = &cmd[1];
    // The check runs after USER, in the runtime image, on the config CMD uses.
    let user_at = runtime
        .iter()
        .position(|i| i.starts_with("USER "))
        .expect("USER");
    let check_at = runtime
        .iter()
        .position(|i| {
            i.starts_with("RUN [")
                && i.contains("--check-config")
                && i.contains(&format!(r#""{config_path}""#))
        })
        .expect("a RUN [\"/promql-frontend\", \"--config\", ..., \"--check-config\"] step");
    assert!(check_at > user_at, "the check runs as the image's user");
    assert!(
        runtime
            .iter()
            .any(|i| i.starts_with("COPY ") && i.ends_with(&format!(" {config_path}"))),
        "the default config is copied to {config_path}"
    );
    let config = Config::from_toml_str(
        &std::fs::read_to_string(repo().join("config.example.toml")).expect("example config"),
    )
    .expect("example config is valid");
    assert_eq!(
        find_instr("EXPOSE "),
        vec![config.server.listen.port().to_string().as_str()]
    );

    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for entry in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lists {entry}"
        );
    }
}

/// The numeric user of the Dockerfile's runtime stage.
fn dockerfile_user() -> u64 {
    let stages = dockerfile_stages();
    let (_, runtime) = stages.last().expect("runtime stage");
    let users: Vec<&str> = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("USER "))
        .collect();
    assert_eq!(users.len(), 1, "one USER in the runtime stage: {runtime:?}");
    users[0]
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("USER is numeric, so the kubelet can verify runAsNonRoot")
}

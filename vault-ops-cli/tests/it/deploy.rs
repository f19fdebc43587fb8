//! `deploy/kubernetes`: no cluster here, so (1) every manifest is parsed and each command,
//! subcommand, flag and environment variable it gives `vault-ops` is checked against the
//! built binary (clap's parser and the binary's own `--help`), with the wiring between the
//! manifests (ServiceAccounts, RBAC, mounts, scrape port, Vault roles and policies); and
//! (2) the Vault policies are checked against real OpenBao: the jobs' own command lines run
//! with Kubernetes auth (`--k8s-role`, through the testkit's TokenReview stand-in) and do their
//! work, and `token capabilities` and real requests show everything else is denied.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use serde::Deserialize;
use serde_json::Value;
use vault_ops_cli::cli::Cli;
use vault_ops_core::config::env;
use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TokenReviewServer, TEST_CA_CERT_PEM};
use vault_ops_testkit::{free_port, BaoConfigServer, BaoServer};

use crate::support::{at, home, text, vault_ops};

/// Where the image puts the binary (the Dockerfile's ENTRYPOINT).
const BIN: &str = "/usr/local/bin/vault-ops";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every YAML document of every `*.yaml` file in deploy/kubernetes: (file name, document).
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/kubernetes")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let yaml = std::fs::read_to_string(&path).expect("read manifest");
        for de in serde_norway::Deserializer::from_str(&yaml) {
            let doc = Value::deserialize(de).unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
            if !doc.is_null() {
                out.push((name.clone(), doc));
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| match s {
                    Value::String(s) => s.clone(),
                    other => panic!("not a string in an argument list: {other}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A workload's pod spec.
fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => doc.pointer("/spec/template/spec"),
        "CronJob" => doc.pointer("/spec/jobTemplate/spec/template/spec"),
        "Pod" => doc.get("spec"),
        _ => None,
    }
}

/// A container's main command line, `vault-ops` first (the image's ENTRYPOINT unless the
/// container sets `command`, which must then start with [`BIN`]).
fn container_argv(c: &Value) -> Vec<String> {
    let command = strings(&c["command"]);
    let mut argv = vec!["vault-ops".to_string()];
    if let Some((first, rest)) = command.split_first() {
        assert_eq!(first, BIN, "container {} runs something else", c["name"]);
        argv.extend(rest.iter().cloned());
    }
    argv.extend(strings(&c["args"]));
    argv
}

/// The exec probes' command lines, `vault-ops` first.
fn probe_argvs(c: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(cmd) = c.pointer(&format!("/{probe}/exec/command")) {
            let cmd = strings(cmd);
            assert_eq!(cmd.first().map(String::as_str), Some(BIN), "{probe}");
            let mut argv = vec!["vault-ops".to_string()];
            argv.extend(cmd[1..].iter().cloned());
            out.push((probe.to_string(), argv));
        }
    }
    out
}

fn flag_value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

/// Checks `argv` against clap's parser and the built binary; returns the subcommand path.
fn check_argv(home: &Path, what: &str, argv: &[String]) -> Vec<String> {
    if let Err(e) = Cli::try_parse_from(argv) {
        panic!(
            "{what}: `{}` is not a valid vault-ops command line:\n{e}",
            argv.join(" ")
        );
    }
    // The subcommand path, skipping flags and their values (flags may be global: look them up
    // in every command on the way down).
    let mut root = Cli::command();
    root.build();
    let mut chain = vec![root];
    let mut path = Vec::new();
    let mut flags = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let tok = &argv[i];
        if let Some(long) = tok.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            flags.push(format!("--{name}"));
            let takes = chain
                .iter()
                .rev()
                .flat_map(|c| c.get_arguments())
                .find(|a| a.get_long() == Some(name))
                .unwrap_or_else(|| panic!("{what}: no flag --{name}"))
                .get_action()
                .takes_values();
            i += if takes && !long.contains('=') { 2 } else { 1 };
            continue;
        }
        let cur = chain.last().expect("root");
        if let Some(sub) = cur.find_subcommand(tok) {
            path.push(tok.clone());
            let sub = sub.clone();
            chain.push(sub);
        }
        i += 1;
    }
    assert!(!path.is_empty(), "{what}: no subcommand in {argv:?}");
    // The built binary knows the subcommand and shows every flag in its help.
    let a = vault_ops(home).args(&path).arg("--help").assert().success();
    let help = text(&a.get_output().stdout);
    for f in &flags {
        assert!(
            help.contains(f.as_str()),
            "{what}: `vault-ops {} --help` does not show {f}",
            path.join(" ")
        );
    }
    path
}

/// Where a container mounts the file `path`: the volume (from the pod spec) and the path
/// inside the volume.
fn volume_for<'a>(pod: &'a Value, c: &Value, path: &str) -> (&'a Value, String) {
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let m = mounts
        .iter()
        .filter(|m| {
            let mp = m["mountPath"].as_str().unwrap_or("");
            path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len())
        .unwrap_or_else(|| panic!("container {}: nothing mounted at {path}", c["name"]));
    let mp = m["mountPath"]
        .as_str()
        .expect("mountPath")
        .trim_end_matches('/');
    let vol = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == m["name"]))
        .unwrap_or_else(|| panic!("no volume {}", m["name"]));
    (vol, path[mp.len() + 1..].to_string())
}

/// The names of the binary's environment variables (`BAO_*`/`VAULT_*` from the core's list).
fn known_env() -> BTreeSet<String> {
    let names = [
        env::ADDR,
        env::TOKEN,
        env::NAMESPACE,
        env::CACERT,
        env::CAPATH,
        env::CLIENT_CERT,
        env::CLIENT_KEY,
        env::SKIP_VERIFY,
        env::TLS_SERVER_NAME,
        env::CLIENT_TIMEOUT,
        env::MAX_RETRIES,
    ];
    env::PREFIXES
        .iter()
        .flat_map(|p| names.iter().map(move |n| format!("{p}{n}")))
        .chain(
            // object_store's S3 settings, read by `backup --upload s3://...`.
            ["AWS_REGION", "AWS_ENDPOINT", "AWS_ALLOW_HTTP"].map(String::from),
        )
        .collect()
}

fn role_file(stem: &str) -> Value {
    let p = deploy_dir().join(format!("vault-roles/{stem}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("role file")).expect("role JSON")
}

fn policy_path(stem: &str) -> PathBuf {
    deploy_dir().join(format!("vault-policies/{stem}.hcl"))
}

#[test]
fn manifests_use_only_what_the_built_binary_has() {
    let h = home();
    let docs = manifests();
    let kinds: BTreeSet<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["kind"].as_str())
        .collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "CronJob",
        "PersistentVolumeClaim",
        "Kustomization",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/kubernetes");
    }

    // The kustomization lists every manifest file, and only those.
    let files: BTreeSet<String> = docs
        .iter()
        .map(|(f, _)| f.clone())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    let kust = &docs
        .iter()
        .find(|(_, d)| d["kind"] == "Kustomization")
        .expect("kustomization")
        .1;
    let listed: BTreeSet<String> = strings(&kust["resources"]).into_iter().collect();
    assert_eq!(listed, files, "kustomization.yaml resources");

    let find = |kind: &str, ns: &str, name: &str| {
        docs.iter().map(|(_, d)| d).find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == name
                && d["metadata"]["namespace"].as_str().unwrap_or("") == ns
        })
    };
    let binding = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("binding");
    assert_eq!(binding["roleRef"]["name"], "system:auth-delegator");
    let known_env = known_env();

    let mut commands = BTreeMap::new();
    for (file, doc) in &docs {
        let Some(pod) = pod_spec(doc) else { continue };
        let ns = doc["metadata"]["namespace"].as_str().expect("namespace");
        let workload = format!("{file}: {} {}", doc["kind"], doc["metadata"]["name"]);

        // Pod security: non-root, no default token.
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{workload}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{workload}");
        // Its ServiceAccount exists and may create TokenReviews.
        let sa = pod["serviceAccountName"]
            .as_str()
            .expect("serviceAccountName");
        assert!(
            find("ServiceAccount", ns, sa).is_some(),
            "{workload}: no ServiceAccount {sa}"
        );
        assert!(
            binding["subjects"]
                .as_array()
                .expect("subjects")
                .iter()
                .any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == ns
                }),
            "{workload}: {sa} is not bound to system:auth-delegator"
        );

        for c in pod["containers"].as_array().expect("containers") {
            let cname = format!("{workload} container {}", c["name"]);
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{cname}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{cname}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{cname}"
            );

            // Environment variables: only ones the binary reads, and never a static token.
            for e in c["env"].as_array().into_iter().flatten() {
                let name = e["name"].as_str().expect("env name");
                assert!(
                    known_env.contains(name),
                    "{cname}: vault-ops does not read {name}"
                );
                assert!(
                    !name.ends_with("_TOKEN"),
                    "{cname}: a static token in {name}"
                );
                if name.ends_with("_CACERT") {
                    let (vol, key) = volume_for(pod, c, e["value"].as_str().expect("value"));
                    assert!(vol.get("configMap").is_some() || vol.get("secret").is_some());
                    assert_eq!(key, "ca.crt", "{cname}: {name}");
                }
            }

            let argv = container_argv(c);
            let path = check_argv(h.path(), &cname, &argv);
            for (probe, pargv) in probe_argvs(c) {
                let ppath = check_argv(h.path(), &format!("{cname} {probe}"), &pargv);
                assert_eq!(ppath, ["health"], "{cname}: {probe} is a health probe");
                let expect = if probe == "livenessProbe" {
                    "liveness"
                } else {
                    "readiness"
                };
                assert_eq!(
                    flag_value(&pargv, "--probe"),
                    Some(expect),
                    "{cname} {probe}"
                );
            }

            // Kubernetes auth: a projected token for the audience of the Vault role, a role
            // bound to this ServiceAccount with a policy of its own.
            let role = flag_value(&argv, "--k8s-role").expect("--k8s-role");
            let stem = role
                .strip_prefix("vault-ops-")
                .expect("role name vault-ops-*");
            let role_doc = role_file(stem);
            assert_eq!(
                role_doc["bound_service_account_names"],
                serde_json::json!([sa])
            );
            assert_eq!(
                role_doc["bound_service_account_namespaces"],
                serde_json::json!([ns])
            );
            assert_eq!(role_doc["token_policies"], serde_json::json!([role]));
            assert!(policy_path(stem).is_file(), "no policy for {role}");
            let token_file = flag_value(&argv, "--k8s-token-file").expect("--k8s-token-file");
            let (vol, key) = volume_for(pod, c, token_file);
            let projected = vol["projected"]["sources"]
                .as_array()
                .and_then(|s| s.iter().find_map(|s| s.get("serviceAccountToken")))
                .unwrap_or_else(|| panic!("{cname}: {token_file} is not a projected token"));
            assert_eq!(projected["path"], key.as_str());
            assert_eq!(projected["audience"], role_doc["audience"]);

            // The scheduler's --config comes from the ConfigMap; the scrape annotations
            // name the port it listens on.
            if path == ["scheduler", "run"] {
                assert_eq!(doc["spec"]["replicas"], 2, "{cname}: two replicas");
                let config = flag_value(&argv, "--config").expect("--config");
                let (vol, key) = volume_for(pod, c, config);
                let cm_name = vol["configMap"]["name"]
                    .as_str()
                    .expect("a ConfigMap volume");
                let cm = find("ConfigMap", ns, cm_name).expect("the ConfigMap");
                let schedule: Value = serde_json::from_str(
                    cm["data"][key.as_str()].as_str().expect("the schedule key"),
                )
                .expect("schedule JSON");
                let port = schedule["listen"]
                    .as_str()
                    .and_then(|l| l.rsplit(':').next())
                    .expect("listen");
                let ann = doc
                    .pointer("/spec/template/metadata/annotations")
                    .expect("annotations");
                assert_eq!(ann["prometheus.io/scrape"], "true");
                assert_eq!(ann["prometheus.io/path"], "/metrics");
                assert_eq!(ann["prometheus.io/port"], port);
                assert!(c["ports"]
                    .as_array()
                    .expect("ports")
                    .iter()
                    .any(|p| p["containerPort"]
                        .as_u64()
                        .map(|n| n.to_string())
                        .as_deref()
                        == Some(port)));
            }
            commands.insert(path.join(" "), cname);
        }
    }
    assert!(
        commands.contains_key("scheduler run"),
        "no scheduler: {commands:?}"
    );
    assert!(
        commands.contains_key("backup"),
        "no backup job: {commands:?}"
    );

    // The image: multi-stage, distroless, non-root, the binary where the probes expect it.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(froms.last().is_some_and(|f| f.contains("distroless")));
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(dockerfile.contains(&format!("ENTRYPOINT [\"{BIN}\"]")));
    assert!(
        dockerfile.contains("--bin vault-ops"),
        "the image builds the vault-ops binary"
    );
    // The build context (the repository root) leaves out target/ and the installed tools.
    let ignore = std::fs::read_to_string(deploy_dir().join("Dockerfile.dockerignore"))
        .expect("Dockerfile.dockerignore");
    for p in ["target", ".tools", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == p), "{p} is not ignored");
    }
}

/// A check that fails must be able to fail: a flag the binary lacks is caught.
#[test]
fn an_unknown_flag_or_subcommand_is_caught() {
    let h = home();
    for bad in [
        // The guide's backup.sh flag; vault-ops spells it `--upload s3://BUCKET/PREFIX`.
        vec!["vault-ops", "backup", "--dir", "/b", "--upload-s3"],
        vec!["vault-ops", "scheduler", "start", "--config", "/c"],
    ] {
        let argv: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        let r = std::panic::catch_unwind(|| check_argv(h.path(), "bad", &argv));
        assert!(r.is_err(), "{bad:?} was accepted");
    }
}

/// Kubernetes auth on `addr` pointed at `reviews`, the role and policy `vault-ops-<stem>` from
/// deploy/kubernetes, and a JWT file for the ServiceAccount the role is bound to.
fn vault_setup(
    h: &Path,
    addr: &str,
    root: &str,
    reviews: &TokenReviewServer,
    stem: &str,
) -> PathBuf {
    let vo = || at(h, addr, root);
    vo().args(["write", "sys/auth/kubernetes", "type=kubernetes"])
        .assert()
        .success();
    let ca = h.join("k8s-ca.pem");
    std::fs::write(&ca, TEST_CA_CERT_PEM).expect("ca");
    vo().args([
        "write",
        "auth/kubernetes/config",
        &format!("kubernetes_host={}", reviews.url()),
        "disable_local_ca_jwt=true",
    ])
    .arg(format!("kubernetes_ca_cert=@{}", ca.display()))
    .assert()
    .success();
    let role = format!("vault-ops-{stem}");
    vo().args(["policy", "write", &role])
        .arg(policy_path(stem))
        .assert()
        .success();
    let role_doc = role_file(stem);
    vo().args(["write", &format!("auth/kubernetes/role/{role}"), "-"])
        .write_stdin(role_doc.to_string())
        .assert()
        .success();
    let sa = ServiceAccount::new(
        role_doc["bound_service_account_namespaces"][0]
            .as_str()
            .expect("ns"),
        role_doc["bound_service_account_names"][0]
            .as_str()
            .expect("sa"),
    )
    .with_audience(role_doc["audience"].as_str().expect("audience"));
    let jwt = JwtSigner::shared().token_for(&sa);
    reviews.accept(&jwt, &sa);
    let jwt_file = h.join(format!("{stem}.jwt"));
    std::fs::write(&jwt_file, &jwt).expect("jwt");
    jwt_file
}

/// A token logged in as `vault-ops-<stem>` (what the pod gets). `write` wants a token; the
/// login path ignores it.
fn login_token(h: &Path, addr: &str, root: &str, stem: &str, jwt_file: &Path) -> String {
    let a = at(h, addr, root)
        .args([
            "--format",
            "json",
            "write",
            "auth/kubernetes/login",
            &format!("role=vault-ops-{stem}"),
        ])
        .arg(format!("jwt=@{}", jwt_file.display()))
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).expect("login JSON");
    v["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .to_string()
}

/// `token capabilities TOKEN PATH...` as root: path → capabilities.
fn capabilities(h: &Path, addr: &str, root: &str, token: &str, paths: &[&str]) -> Value {
    let a = at(h, addr, root)
        .args(["--format", "json", "token", "capabilities", token])
        .args(paths)
        .assert()
        .success();
    serde_json::from_slice(&a.get_output().stdout).expect("capabilities JSON")
}

/// The manifest container's command line with pod paths replaced for the test.
fn job_argv(kind: &str, replace: &[(&str, String)]) -> Vec<String> {
    let docs = manifests();
    let doc = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind)
        .expect("workload");
    let c = &pod_spec(doc).expect("pod")["containers"][0];
    container_argv(c)[1..]
        .iter()
        .map(|a| {
            replace
                .iter()
                .find(|(from, _)| a == from)
                .map_or_else(|| a.clone(), |(_, to)| to.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_policy_lets_the_cronjob_back_up_and_nothing_else() {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let root = init.root_token.clone();
    let addr = node.addr();
    let reviews = TokenReviewServer::start().await;
    let h = home();
    let jwt_file = vault_setup(h.path(), &addr, &root, &reviews, "backup");

    // The CronJob's own command line (pod paths swapped for temp ones), no VAULT_TOKEN.
    let dir = h.path().join("backups/vault");
    let argv = job_argv(
        "CronJob",
        &[
            (
                "/var/run/secrets/vault/token",
                jwt_file.display().to_string(),
            ),
            ("/backups/vault", dir.display().to_string()),
            (
                "s3://my-vault-backups/vault",
                "s3://vault-backups/vault".into(),
            ),
        ],
    );
    assert!(argv.contains(&"--k8s-role".to_string()));
    // The upload goes to a loopback S3 server that checks signatures (credentials by env).
    let s3 = vault_ops_testkit::S3Server::start().await;
    s3.create_bucket("vault-backups");
    let a = vault_ops(h.path())
        .env("VAULT_ADDR", &addr)
        .envs(s3.env())
        .args(&argv)
        .assert();
    let out = a.get_output();
    assert!(
        out.status.success(),
        "backup with the backup policy failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("backup dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".snap")), "{names:?}");
    assert!(
        names.iter().any(|n| n.ends_with(".snap.sha256")),
        "{names:?}"
    );
    assert!(
        reviews.review_count() >= 1,
        "the login went through a TokenReview"
    );
    let snap = names.iter().find(|n| n.ends_with(".snap")).expect("snap");
    assert!(
        s3.object_file("vault-backups", &format!("vault/{snap}"))
            .is_file(),
        "the CronJob's backup was uploaded"
    );

    // Nothing else: the login token reads the snapshot and may not restore, read secrets
    // or change configuration.
    let token = login_token(h.path(), &addr, &root, "backup", &jwt_file);
    let caps = capabilities(
        h.path(),
        &addr,
        &root,
        &token,
        &[
            "sys/storage/raft/snapshot",
            "sys/storage/raft/snapshot-force",
            "sys/storage/raft/configuration",
            "secret/data/app",
            "sys/policies/acl/vault-ops-backup",
            "auth/kubernetes/role/vault-ops-backup",
            "sys/mounts/x",
        ],
    );
    assert_eq!(
        caps["sys/storage/raft/snapshot"],
        serde_json::json!(["read"])
    );
    for (path, c) in caps.as_object().expect("map") {
        if path != "sys/storage/raft/snapshot" {
            assert_eq!(c, &serde_json::json!(["deny"]), "{path}");
        }
    }
    // And for real: the same login cannot read the raft configuration or write a secret.
    let denied = vault_ops(h.path())
        .env("VAULT_ADDR", &addr)
        .args(["--k8s-role", "vault-ops-backup", "--k8s-token-file"])
        .arg(&jwt_file)
        .args(["read", "sys/storage/raft/configuration"])
        .assert()
        .code(1);
    assert!(text(&denied.get_output().stderr).contains("permission denied"));
    node.stop().await;
}

fn metric(body: &str, name: &str, secret: &str) -> Option<f64> {
    let prefix = format!("{name}{{secret=\"{secret}\",kind=\"api_key\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn get_metrics(port: u16) -> Option<String> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_policy_lets_the_deployment_rotate_and_nothing_else() {
    let bao = BaoServer::start().await;
    let addr = bao.addr();
    let root = bao.root_token().to_string();
    let reviews = TokenReviewServer::start().await;
    let h = home();
    let jwt_file = vault_setup(h.path(), &addr, &root, &reviews, "scheduler");

    // The ConfigMap's schedule, as the pod sees it.
    let docs = manifests();
    let cm = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "vault-ops-scheduler")
        .expect("ConfigMap");
    let schedule_file = h.path().join("schedule.json");
    std::fs::write(
        &schedule_file,
        cm["data"]["schedule.json"].as_str().expect("schedule"),
    )
    .expect("write schedule");
    let schedule: Value =
        serde_json::from_str(cm["data"]["schedule.json"].as_str().expect("schedule"))
            .expect("JSON");
    let secrets: Vec<String> = schedule["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect();

    // The Deployment's command line, with a loopback --listen, in as many replicas as the
    // Deployment asks for (two), started together.
    let replicas = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "Deployment")
        .and_then(|d| d["spec"]["replicas"].as_u64())
        .expect("replicas");
    assert_eq!(replicas, 2);
    let argv = job_argv(
        "Deployment",
        &[
            (
                "/var/run/secrets/vault/token",
                jwt_file.display().to_string(),
            ),
            (
                "/etc/vault-ops/schedule.json",
                schedule_file.display().to_string(),
            ),
        ],
    );
    let mut pods = Vec::new();
    for _ in 0..replicas {
        let port = free_port();
        let child = Process::new(env!("CARGO_BIN_EXE_vault-ops"))
            .env_clear()
            .env("HOME", h.path())
            .env("VAULT_ADDR", &addr)
            .args(&argv)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the scheduler");
        pods.push((port, child));
    }
    // Each secret (never rotated: due at once) is rotated exactly once across the replicas,
    // without failures.
    let total = |bodies: &[String], name: &str, secret: &str| -> f64 {
        bodies.iter().filter_map(|b| metric(b, name, secret)).sum()
    };
    let scrape = |pods: &[(u16, std::process::Child)]| -> Option<Vec<String>> {
        pods.iter().map(|(port, _)| get_metrics(*port)).collect()
    };
    let start = Instant::now();
    let mut bodies = Vec::new();
    let mut done = false;
    while start.elapsed() < Duration::from_secs(60) && !done {
        if let Some(b) = scrape(&pods) {
            done = secrets
                .iter()
                .all(|s| total(&b, "vault_ops_rotations_total", s) >= 1.0);
            bodies = b;
        }
        if !done {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    if done {
        // Give the other replica time to run (and, if the claim did not work, rotate again).
        std::thread::sleep(Duration::from_secs(3));
        bodies = scrape(&pods).expect("both replicas serve /metrics");
    }
    let mut stderr = String::new();
    let mut stopped = Vec::new();
    for (_, mut child) in pods {
        let _ = Process::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        stopped.push(status.is_some_and(|s| s.success()));
    }
    assert!(done, "not every secret was rotated:\n{bodies:?}\n{stderr}");
    for s in &secrets {
        assert_eq!(
            total(&bodies, "vault_ops_rotations_total", s),
            1.0,
            "{s}: rotated once across the replicas\n{bodies:?}"
        );
        assert_eq!(
            total(&bodies, "vault_ops_rotation_failures_total", s),
            0.0,
            "{s}\n{stderr}"
        );
    }
    for b in &bodies {
        assert!(b.contains("vault_ops_token_valid 1"), "{b}");
    }
    assert_eq!(stopped, [true, true], "stopped cleanly: {stderr}");
    // The keys are in Vault where the schedule says.
    for s in &secrets {
        at(h.path(), &addr, &root)
            .args([
                "kv",
                "get",
                "--field",
                "api_key",
                &format!("secret/api-keys/{s}"),
            ])
            .assert()
            .success();
    }

    // The Deployment's probes pass against this server with the container's environment
    // (no token, no login).
    let deployment = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    let c = &pod_spec(deployment).expect("pod")["containers"][0];
    let probes = probe_argvs(c);
    assert_eq!(probes.len(), 2, "liveness and readiness");
    for (probe, pargv) in probes {
        let a = vault_ops(h.path())
            .env("VAULT_ADDR", &addr)
            .args(&pargv[1..])
            .assert();
        let out = a.get_output();
        assert!(
            out.status.success(),
            "{probe} failed:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // Nothing else: no delete or destroy, nothing outside the two prefixes.
    let token = login_token(h.path(), &addr, &root, "scheduler", &jwt_file);
    let caps = capabilities(
        h.path(),
        &addr,
        &root,
        &token,
        &[
            "secret/data/api-keys/stripe",
            "secret/data/rotation-state/api-keys/stripe",
            "secret/delete/api-keys/stripe",
            "secret/destroy/api-keys/stripe",
            "secret/data/app/config",
            "secret/data/database/main-db",
            "sys/policies/acl/vault-ops-scheduler",
            "sys/storage/raft/snapshot",
            "auth/kubernetes/role/vault-ops-scheduler",
        ],
    );
    let rw = serde_json::json!(["create", "read", "update"]);
    assert_eq!(caps["secret/data/api-keys/stripe"], rw);
    assert_eq!(caps["secret/data/rotation-state/api-keys/stripe"], rw);
    for (path, c) in caps.as_object().expect("map") {
        if !path.starts_with("secret/data/api-keys/")
            && !path.starts_with("secret/data/rotation-state/")
        {
            assert_eq!(c, &serde_json::json!(["deny"]), "{path}");
        }
    }
    // And for real: writing elsewhere is refused.
    let denied = vault_ops(h.path())
        .env("VAULT_ADDR", &addr)
        .args(["--k8s-role", "vault-ops-scheduler", "--k8s-token-file"])
        .arg(&jwt_file)
        .args(["kv", "put", "secret/app/config", "password=x"])
        .assert()
        .code(1);
    assert!(text(&denied.get_output().stderr).contains("permission denied"));
    bao.stop().await;
}

/// `--k8s-role` with a ServiceAccount the role is not bound to: a clear refusal, exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_kubernetes_login_is_reported_with_a_hint() {
    let bao = BaoServer::start().await;
    let addr = bao.addr();
    let reviews = TokenReviewServer::start().await;
    let h = home();
    vault_setup(h.path(), &addr, bao.root_token(), &reviews, "backup");
    let other = ServiceAccount::new("vault-ops", "someone-else").with_audience("vault");
    let jwt = JwtSigner::shared().token_for(&other);
    reviews.accept(&jwt, &other);
    let f = h.path().join("other.jwt");
    std::fs::write(&f, &jwt).expect("jwt");
    let a = vault_ops(h.path())
        .env("VAULT_ADDR", &addr)
        .args(["--k8s-role", "vault-ops-backup", "--k8s-token-file"])
        .arg(&f)
        .arg("status")
        .assert()
        .code(1);
    let err = text(&a.get_output().stderr);
    assert!(
        err.contains("kubernetes login as \"vault-ops-backup\""),
        "{err}"
    );
    assert!(err.contains("service account name not authorized"), "{err}");
    assert!(
        err.contains("hint: check the Kubernetes auth role"),
        "{err}"
    );
    assert!(!err.contains(&jwt), "the JWT is never printed");
    bao.stop().await;
}

//! Every example program, run as a user would against a real OpenBao dev server: readable
//! output (no Rust `Debug` dumps, `Some(..)`, `NaN`), and errors printed by the one reporter
//! (`vault_ops_cli::report`) with the address tried and a hint.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use vault_ops_core::VaultClient;
use vault_ops_testkit::BaoServer;

/// The example programs of this crate (`examples/src/bin`), except the tour.
const BINS: &[&str] = &[
    "auth_list",
    "backup",
    "health_check",
    "kv_get",
    "kv_list",
    "kv_put",
    "metrics",
    "pki_issue",
    "policy_list",
    "policy_read",
    "policy_write",
    "raft_peers",
    "restore",
    "seal",
    "secrets_list",
    "status",
    "token_capabilities",
    "token_lookup",
    "unseal",
];

/// The examples of vault-ops-k8s-auth and vault-ops-rotation (`cargo build --examples`).
const CRATE_EXAMPLES: &[&str] = &[
    "approle_login",
    "k8s_list_roles",
    "k8s_login",
    "k8s_read_config",
    "rotate_api_key",
    "rotate_database",
    "scheduler",
];

/// The path of an example program: a bin of this crate, or a crate example (built on demand).
fn program(name: &str) -> PathBuf {
    if BINS.contains(&name) {
        // Cargo builds this crate's bins for its integration tests.
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_status"));
        return exe.with_file_name(name);
    }
    let deps = std::env::current_exe().expect("test binary path");
    let profile = deps
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    profile.join("examples").join(name)
}

/// Builds the k8s-auth and rotation examples (cargo does not build other packages' examples
/// for this crate's tests).
fn build_crate_examples() {
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--examples",
            "-p",
            "vault-ops-k8s-auth",
            "-p",
            "vault-ops-rotation",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .expect("cargo build --examples");
    assert!(status.success(), "building the crate examples failed");
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `name` with `args`, a clean environment plus `env`, and `stdin`; at most 60 s.
async fn run(name: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = tokio::process::Command::new(program(name));
    cmd.args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("VAULT_MAX_RETRIES", "0")
        .env("VAULT_CLIENT_TIMEOUT", "10s")
        .current_dir(home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    // A program that fails before reading its input closes the pipe: that is not an error.
    if let Err(e) = input.write_all(stdin.as_bytes()).await {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "{name}: stdin: {e}"
        );
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} {args:?} ran over 60 s"))
        .expect("wait");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_debug(name, &r.all());
    r
}

/// Fails when `text` holds Rust `Debug` output: `Some(..)`, `NaN`, a struct dump such as
/// `Transport { method: ...`, or `Error: ` followed by a variant name.
fn assert_no_debug(name: &str, text: &str) {
    for bad in ["Some(", "NaN", "Api(", "ApiError", "Duration {", "{ secs:"] {
        assert!(
            !text.contains(bad),
            "{name}: Debug output {bad:?} reached the user:\n{text}"
        );
    }
    // `Ident { field: ...` struct dumps.
    for (i, _) in text.match_indices(" { ") {
        let before = text[..i].rsplit([' ', '\n', '(']).next().unwrap_or("");
        let after = text[i + 3..].split([' ', '\n']).next().unwrap_or("");
        let ident = before.starts_with(|c: char| c.is_ascii_uppercase())
            && before
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(
            !(ident && after.ends_with(':')),
            "{name}: a struct dump reached the user:\n{text}"
        );
    }
    // `Error: Variant` / `Error: Variant(`: the reporter writes a sentence after `Error: `.
    for (i, _) in text.match_indices("Error: ") {
        let word: String = text[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let camel = word.len() > 1
            && word.starts_with(|c: char| c.is_ascii_uppercase())
            && word[1..].chars().any(|c| c.is_ascii_uppercase())
            && word.chars().any(|c| c.is_ascii_lowercase());
        let next = text[i + 7 + word.len()..].chars().next();
        assert!(
            !camel && !matches!(next, Some('(') | Some('{')),
            "{name}: `Error: {word}` looks like a Debug dump:\n{text}"
        );
    }
}

/// The reporter's shape: `Error: <message>` then `  address: <addr> (from ...)`.
fn assert_reported(name: &str, r: &Run, address_line: &str) {
    assert_ne!(r.code, 0, "{name} should fail:\n{}", r.all());
    assert!(
        r.stderr.contains("Error: "),
        "{name}: no reporter message:\n{}",
        r.all()
    );
    assert!(
        r.stderr.contains(address_line),
        "{name}: the address line {address_line:?} is missing:\n{}",
        r.all()
    );
}

/// Arguments that get each program as far as its first request.
fn args_for(name: &str) -> Vec<&'static str> {
    match name {
        "kv_get" => vec!["secret/vault-ops-example/none"],
        "kv_list" => vec!["secret/vault-ops-example"],
        "kv_put" => vec!["secret/vault-ops-example/x", "a=1"],
        "pki_issue" => vec!["pki", "web", "a.example.com", "out"],
        "policy_read" => vec!["default"],
        "policy_write" => vec!["vault-ops-example", "-"],
        "restore" => vec!["missing.snap", "--force", "--no-checksum"],
        "seal" => vec!["--yes"],
        "token_capabilities" => vec!["secret/data/a"],
        "approle_login" => vec![],
        "rotate_api_key" | "scheduler" => vec!["--yes"],
        "rotate_database" => vec!["main-db", "--user", "app"],
        _ => vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_print_readable_output_and_reported_errors() {
    let bao = BaoServer::start().await;
    let addr = bao.addr();
    let token = bao.root_token().to_string();
    let env = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_TOKEN", token.as_str()),
    ];
    let ok = |name: &str, r: &Run| assert_eq!(r.code, 0, "{name} failed:\n{}", r.all());

    // Daily operations succeed, with readable output.
    for name in [
        "status",
        "auth_list",
        "secrets_list",
        "policy_list",
        "token_lookup",
        "metrics",
    ] {
        let r = run(name, &[], &env, "").await;
        ok(name, &r);
    }
    let r = run("metrics", &["all"], &env, "").await;
    ok("metrics all", &r);
    let r = run("policy_read", &["default"], &env, "").await;
    ok("policy_read", &r);
    assert!(r.stdout.contains("path \"auth/token/lookup-self\""));
    let r = run(
        "policy_write",
        &["vault-ops-example", "-"],
        &env,
        "path \"secret/data/vault-ops-example/*\" { capabilities = [\"read\"] }\n",
    )
    .await;
    ok("policy_write", &r);
    let r = run(
        "kv_put",
        &["secret/vault-ops-example/app", "mode=blue", "n=3"],
        &env,
        "",
    )
    .await;
    ok("kv_put", &r);
    assert!(r.stdout.contains("version 1"), "{}", r.stdout);
    let r = run("kv_get", &["secret/vault-ops-example/app"], &env, "").await;
    ok("kv_get", &r);
    assert!(r.stdout.contains("mode") && r.stdout.contains("blue"));
    assert!(r.stdout.contains(" UTC"), "a readable date: {}", r.stdout);
    let r = run("kv_list", &["secret/vault-ops-example"], &env, "").await;
    ok("kv_list", &r);
    assert!(r.stdout.contains("app"));
    let r = run("kv_get", &["secret/vault-ops-example/none"], &env, "").await;
    assert_reported(
        "kv_get (missing)",
        &r,
        &format!("address: {addr} (from VAULT_ADDR)"),
    );
    assert!(r
        .stderr
        .contains("no value found at secret/vault-ops-example/none"));

    // token_capabilities answers for every path given.
    let r = run(
        "token_capabilities",
        &[
            "secret/data/vault-ops-example/app",
            "sys/seal",
            "auth/token/create",
        ],
        &env,
        "",
    )
    .await;
    ok("token_capabilities", &r);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one line per path:\n{}", r.stdout);
    for (line, path) in lines
        .iter()
        .zip(["secret/data/vault-ops-example/app", "sys/seal"])
    {
        assert!(line.starts_with(path) && line.contains("root"), "{line}");
    }

    // health_check exits 0/1/2 with a readable report.
    let r = run("health_check", &[], &env, "").await;
    assert!(r.code == 0 || r.code == 1, "health_check:\n{}", r.all());

    // Raft calls on a server without raft storage: the reporter's hint.
    for name in ["raft_peers", "backup"] {
        let r = run(name, &[], &env, "").await;
        assert_reported(name, &r, &format!("address: {addr} (from VAULT_ADDR)"));
        if name == "raft_peers" {
            assert!(
                r.stderr.contains("no raft (integrated) storage"),
                "{}",
                r.all()
            );
        }
    }

    // Sealing needs --yes.
    let r = run("seal", &[], &env, "").await;
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--yes"));

    // A wrong token: Vault's message, the address, and the capabilities hint.
    let wrong = [("VAULT_ADDR", addr.as_str()), ("VAULT_TOKEN", "s.wrong")];
    for name in ["token_lookup", "policy_list", "kv_list"] {
        let r = run(name, &args_for(name), &wrong, "").await;
        assert_reported(name, &r, &format!("address: {addr} (from VAULT_ADDR)"));
        assert!(r.stderr.contains("permission denied"), "{}", r.all());
        assert!(r.stderr.contains("token capabilities"), "{}", r.all());
    }

    // The crate examples: rotate_api_key against a "real" server (VAULT_ADDR set) writes only
    // below secret/vault-ops-example/, only with --yes, and removes it all.
    build_crate_examples();
    let r = run("rotate_api_key", &[], &env, "").await;
    assert_eq!(r.code, 2, "needs --yes:\n{}", r.all());
    assert!(r.stderr.contains("--yes"));
    let client = VaultClient::builder()
        .address(addr.as_str())
        .token(token.as_str())
        .build()
        .expect("client");
    let kv = client.kv2("secret");
    for name in ["rotate_api_key", "scheduler"] {
        let r = run(name, &["--yes"], &env, "").await;
        ok(name, &r);
        assert!(r.stdout.contains("rotated") || r.stdout.contains("rotations="));
        for path in [
            "proxy/api-keys/stripe",
            "api-keys/stripe",
            "api-keys/github",
            "vault-ops-example/proxy/api-keys/stripe",
            "vault-ops-example/api-keys/stripe",
        ] {
            let meta = kv.read_metadata(path).await.expect("read metadata");
            assert!(meta.is_none(), "{name} left secret/{path} behind");
        }
        let left = kv.list("vault-ops-example").await;
        assert!(
            left.as_ref()
                .map_or(true, |k| k.is_empty() || k == &["app"]),
            "{name} left {left:?} below secret/vault-ops-example/"
        );
    }
    let r = run("k8s_read_config", &[], &env, "").await;
    assert_reported(
        "k8s_read_config",
        &r,
        &format!("address: {addr} (from VAULT_ADDR)"),
    );
    let r = run("k8s_list_roles", &[], &env, "").await;
    assert_reported(
        "k8s_list_roles",
        &r,
        &format!("address: {addr} (from VAULT_ADDR)"),
    );
    bao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_reports_an_unreachable_address_and_an_unset_vault_addr() {
    // Nothing listens on port 1; every program names the address and the http/https hint.
    let env = [("VAULT_ADDR", "http://127.0.0.1:1"), ("VAULT_TOKEN", "x")];
    build_crate_examples();
    for &name in BINS.iter().chain(CRATE_EXAMPLES) {
        let mut env = env.to_vec();
        match name {
            "approle_login" => env.push(("VAULT_APPROLE_ROLE_ID", "role")),
            "k8s_login" => {
                env.push(("VAULT_K8S_ROLE", "app"));
                env.push(("VAULT_K8S_JWT_FILE", "/dev/null"));
            }
            "rotate_database" => env.push(("PGADMIN_PASSWORD", "x")),
            _ => {}
        }
        let policy = "path \"secret/*\" { capabilities = [\"read\"] }\n";
        let r = run(name, &args_for(name), &env, policy).await;
        if name == "k8s_login" {
            // The JWT file is checked before any request: a readable local error.
            assert_ne!(r.code, 0, "{}", r.all());
            assert!(r.stderr.contains("Error: "), "{}", r.all());
            continue;
        }
        if name == "health_check" {
            // The health report is the output: critical, with the reason.
            assert_eq!(r.code, 2, "{}", r.all());
            continue;
        }
        if name == "restore" {
            // The file is checked before the server is asked.
            assert_ne!(r.code, 0, "{}", r.all());
            assert!(r.stderr.contains("Error: "), "{}", r.all());
            continue;
        }
        assert_reported(name, &r, "address: http://127.0.0.1:1 (from VAULT_ADDR)");
        assert!(
            r.stderr.contains("nothing listens at http://127.0.0.1:1"),
            "{name}:\n{}",
            r.all()
        );
    }
    // VAULT_ADDR unset: the reporter says so (status tries the default address).
    let r = run("status", &[], &[("VAULT_TOKEN", "x")], "").await;
    assert_reported("status", &r, "VAULT_ADDR is unset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_on_a_real_server_stays_in_its_prefix_and_never_seals() {
    let bao = BaoServer::start().await;
    let addr = bao.addr();
    let token = bao.root_token().to_string();
    let env = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_TOKEN", token.as_str()),
    ];
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_tour"));
    let home = tempfile::tempdir().expect("temp dir");
    let out = tokio::process::Command::new(exe)
        .env_clear()
        .env("HOME", home.path())
        .envs(env)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the tour ran over 120 s")
        .expect("tour");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tour failed:\n{text}");
    assert_no_debug("tour", &text);
    assert!(text.contains("Tour complete"), "{text}");
    // The read-only half ran: the health report, and raft peers reported through the
    // reporter (a dev server has no raft storage).
    assert!(text.contains("Vault health report for"), "{text}");
    assert!(text.contains("no raft (integrated) storage"), "{text}");
    assert!(
        !text.contains("── 14. Seal"),
        "sealed a real server:\n{text}"
    );

    let client = VaultClient::builder()
        .address(addr.as_str())
        .token(token.as_str())
        .build()
        .expect("client");
    assert!(
        !client
            .sys()
            .seal_status()
            .await
            .expect("seal status")
            .sealed
    );
    let left = client.kv2("secret").list("vault-ops-tour").await;
    assert!(
        left.as_ref().map_or(true, |k| k.is_empty()),
        "the tour left {left:?} below secret/vault-ops-tour/"
    );
    let state = client.kv2("secret").list("rotation-state").await;
    assert!(
        state.as_ref().map_or(true, |k| k.is_empty()),
        "the tour wrote rotation state outside its prefix: {state:?}"
    );
    let policies = client.policies().list().await.expect("policies");
    assert!(!policies.iter().any(|p| p == "vault-ops-tour-read"));
    bao.stop().await;
}

/// The fenced blocks of `section` (from its `## ` heading to the next): (info string, body).
fn fenced_blocks(markdown: &str, section: &str) -> Vec<(String, String)> {
    let start = markdown
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("README has no `## {section}`"));
    let rest = &markdown[start + section.len() + 5..];
    let body = rest.find("\n## ").map_or(rest, |end| &rest[..end]);
    let mut blocks = Vec::new();
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let code: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            blocks.push((info.to_string(), code.join("\n")));
        }
    }
    blocks
}

/// `name = "1.2"` or `name = { version = "1.2", features = ["a", "b"] }` lines of a
/// `[dependencies]` block: name → (version, features).
fn toml_dependencies(block: &str) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    let quoted =
        |s: &str| -> Vec<String> { s.split('"').skip(1).step_by(2).map(String::from).collect() };
    let mut deps = std::collections::BTreeMap::new();
    for line in block.lines().map(str::trim) {
        if line.is_empty() || line == "[dependencies]" {
            continue;
        }
        let (name, spec) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not a dependency line: {line}"));
        let (version, features) = match spec.split_once("features = [") {
            Some((head, list)) => (quoted(head), quoted(list.split(']').next().unwrap_or(""))),
            None => (quoted(spec), Vec::new()),
        };
        assert_eq!(version.len(), 1, "one version in: {line}");
        deps.insert(name.to_string(), (version[0].clone(), features));
    }
    deps
}

/// The version Cargo.lock resolved for `name` (the workspace's own crates: their version).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("Cargo.lock");
    let entry = format!("name = \"{name}\"\nversion = \"");
    let at = lock
        .find(&entry)
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
    let rest = &lock[at + entry.len()..];
    rest[..rest.find('"').expect("version")].to_string()
}

/// A caret requirement (`"1"`, `"0.1"`, `"1.47"`) that `version` satisfies.
fn satisfies(version: &str, requirement: &str) -> bool {
    let parse =
        |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().expect("a number")).collect() };
    let (have, want) = (parse(version), parse(requirement));
    // Caret: same leftmost non-zero part, and not older.
    let significant = want.iter().position(|p| *p != 0).unwrap_or(want.len() - 1);
    have[..=significant] == want[..=significant] && have[..want.len()] >= want[..]
}

/// The README's quick start lists exactly the crates its program uses, with versions this
/// workspace satisfies and the tokio features `#[tokio::main]` needs; the `cargo add` lines say
/// the same. (The program itself is compiled by `cargo test -p vault-ops-examples --doc`:
/// src/lib.rs includes the README.)
#[test]
fn the_readme_quick_start_lists_the_dependencies_its_program_uses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = fenced_blocks(&readme, "Quick start");
    let block = |info: &str| {
        blocks
            .iter()
            .find(|(i, _)| i == info)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("the quick start has no ```{info} block"))
    };
    let program = block("rust,no_run");
    let deps = toml_dependencies(&block("toml"));

    // Every crate path the program names (`krate::...`, `#[krate::main]`).
    let mut used = std::collections::BTreeSet::new();
    for word in program.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if let Some((root, _)) = word.split_once("::") {
            if root.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && !["std", "core", "alloc", "crate", "self", "super"].contains(&root)
            {
                used.insert(root.to_string());
            }
        }
    }
    assert!(
        used.contains("vault_ops_core") && used.contains("tokio"),
        "{used:?}"
    );
    // Package names as Rust paths (`vault-ops-core` is `vault_ops_core`).
    let listed: std::collections::BTreeSet<String> =
        deps.keys().map(|k| k.replace('-', "_")).collect();
    assert_eq!(used, listed, "crates used vs listed in the quick start");

    for (name, (requirement, _)) in &deps {
        let have = locked_version(name);
        assert!(
            satisfies(&have, requirement),
            "{name} = {requirement:?}, but the workspace builds {have}"
        );
    }
    let tokio_features = &deps["tokio"].1;
    for needed in ["macros", "rt-multi-thread"] {
        assert!(
            tokio_features.iter().any(|f| f == needed),
            "tokio needs {needed}: {tokio_features:?}"
        );
    }

    // The `cargo add` lines: the same crates and features.
    let add = block("sh");
    let mut added = std::collections::BTreeSet::new();
    for line in add.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.get(..2), Some(&["cargo", "add"][..]), "{line}");
        let mut rest = words[2..].iter();
        while let Some(w) = rest.next() {
            if *w == "--features" {
                let features = rest.next().expect("features");
                let named: Vec<&str> = words[2..]
                    .iter()
                    .take_while(|w| !w.starts_with("--"))
                    .copied()
                    .collect();
                for f in features.split(',') {
                    for n in &named {
                        assert!(
                            deps[*n].1.iter().any(|g| g == f),
                            "{n}: {f} not in Cargo.toml lines"
                        );
                    }
                }
            } else {
                added.insert(w.to_string());
            }
        }
    }
    let toml_names: std::collections::BTreeSet<String> = deps.keys().cloned().collect();
    assert_eq!(added, toml_names, "`cargo add` vs the Cargo.toml lines");

    // The version check can fail.
    assert!(
        !satisfies("1.46.0", "1.47") && satisfies("1.48.1", "1.47") && !satisfies("0.2.0", "0.1")
    );
}

/// Whether `text` holds something shaped like a Vault token (`s.` or `hvs.` and 20+
/// letters and digits, not inside a longer word).
fn has_token_shape(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        let after = if b[i..].starts_with(b"hvs.") {
            i + 4
        } else if b[i..].starts_with(b"s.") {
            i + 2
        } else {
            return false;
        };
        let before_ok = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let run = b[after..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        before_ok && run >= 20
    })
}

/// The processes whose working directory is below `dir` (the testkit runs each server in its
/// own temporary directory): (pid, command line).
fn processes_below(dir: &std::path::Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// `./dev tour` without VAULT_ADDR: the local half and the raft half on servers the tour
/// starts, each section's result checked from its output, the debug bundle kept
/// (VAULT_OPS_TOUR_OUTPUT) and read back, and no server process left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_tour_walks_the_raft_half_and_stops_its_servers() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // The tour's servers (and their data) live below this TMPDIR, which finds them later.
    let tmpdir = tmp.path().join("tmp");
    let output = tmp.path().join("output");
    let home = tmp.path().join("home");
    for d in [&tmpdir, &output, &home] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let mut cmd = tokio::process::Command::new(PathBuf::from(env!("CARGO_BIN_EXE_tour")));
    cmd.env_clear()
        .env("HOME", &home)
        .env("TMPDIR", &tmpdir)
        .env("VAULT_OPS_TOUR_OUTPUT", &output)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // Where the test servers' binaries are (./dev sets these); never VAULT_* or BAO_*.
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name == "PATH" || (name.starts_with("VAULT_OPS_") && name != "VAULT_OPS_TOUR_OUTPUT") {
            cmd.env(&k, v);
        }
    }
    let started = std::time::Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tour");
    let mut run = tokio::spawn(tokio::time::timeout(
        Duration::from_secs(180),
        child.wait_with_output(),
    ));
    // While it runs, its servers are seen below TMPDIR (so the check at the end can fail).
    let mut seen_running = 0;
    let out = loop {
        tokio::select! {
            done = &mut run => break done.expect("join").expect("the tour ran over 180 s").expect("tour"),
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                seen_running = seen_running.max(processes_below(&tmpdir).len());
            }
        }
    };
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tour failed after {took:?}:\n{all}");
    assert_no_debug("tour", &all);
    assert!(stdout.contains("Tour complete"), "{all}");
    let line = |prefix: &str| -> &str {
        stdout
            .lines()
            .map(str::trim_start)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{stdout}"))
    };

    // Backup → change → restore: the restored value is the one from before the change.
    assert!(line("backup ").contains(".snap ("), "{stdout}");
    let value = |l: &str| {
        l.split("state = ")
            .nth(1)
            .and_then(|v| v.split(" (").next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no value in {l:?}"))
    };
    assert_eq!(value(line("changed: ")), "\"changed after the backup\"");
    assert_eq!(value(line("restored: ")), "\"before the backup\"");
    // The health report and the raft peers of the single-node raft server.
    let report = line("Vault health report for ");
    assert!(
        report.ends_with(": OK") || report.ends_with(": WARNING"),
        "{report}"
    );
    assert!(line("raft: ").contains("leader tour-node1"), "{stdout}");
    let peer = line("tour-node1 ");
    assert!(
        peer.contains("leader") && peer.ends_with("voter true"),
        "{peer}"
    );
    // Sealed, then unsealed; stepped down and elected again.
    assert_eq!(line("sealed: "), "sealed: true");
    assert!(line("unsealed with ").ends_with("sealed false"), "{stdout}");
    assert!(
        line("stepped down;").ends_with("(this node: true)"),
        "{stdout}"
    );
    // The scheduler rotated both secrets, without a failure.
    for secret in ["stripe ", "github "] {
        let l = line(secret);
        let rotations: u32 = l
            .split("rotations ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{l}"));
        assert!(rotations >= 1 && l.ends_with("failures 0"), "{l}");
    }
    assert!(line("bundle ").ends_with("exit code 0"), "{stdout}");

    // The bundle: a 0600 .tar.gz that tar reads, with the collected state and no token.
    let bundles: Vec<PathBuf> = std::fs::read_dir(&output)
        .expect("output")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("vault-ops-tour-debug-")
        })
        .flat_map(|e| std::fs::read_dir(e.path()).expect("debug dir").flatten())
        .map(|e| e.path())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let bundle = &bundles[0];
    assert!(bundle.to_string_lossy().ends_with(".tar.gz"), "{bundle:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(bundle)
            .expect("bundle")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{bundle:?}");
    }
    let x = tmp.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(bundle)
        .arg("-C")
        .arg(&x)
        .status()
        .expect("tar");
    assert!(status.success(), "tar cannot read {bundle:?}");
    let top = std::fs::read_dir(&x)
        .expect("x")
        .flatten()
        .next()
        .expect("one folder")
        .path();
    let mut contents = String::new();
    let mut names = Vec::new();
    for e in std::fs::read_dir(&top).expect("bundle folder").flatten() {
        names.push(e.file_name().to_string_lossy().into_owned());
        contents.push_str(&std::fs::read_to_string(e.path()).expect("a text file"));
    }
    for expected in ["seal-status.json", "raft-configuration.json", "index.json"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    assert!(
        contents.contains("tour-node1"),
        "the raft configuration is in the bundle"
    );
    assert!(
        !has_token_shape(&contents),
        "a token-shaped string is in the bundle"
    );
    assert!(
        has_token_shape("token: s.AbCdEfGhIjKlMnOpQrStUvWx\n") && !has_token_shape("vault.s.x")
    );
    // The backup is kept too, with its checksum.
    let backups: Vec<String> = std::fs::read_dir(&output)
        .expect("output")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("vault-ops-tour-backups-")
        })
        .flat_map(|e| std::fs::read_dir(e.path()).expect("backups").flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(backups.iter().any(|n| n.ends_with(".snap")), "{backups:?}");
    assert!(
        backups.iter().any(|n| n.ends_with(".snap.sha256")),
        "{backups:?}"
    );

    // Every server the tour started (OpenBao dev and raft, PostgreSQL) is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = processes_below(&tmpdir);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = processes_below(&tmpdir);
    }
    for (pid, _) in &left {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(left.is_empty(), "the tour left servers running: {left:?}");
    assert!(
        seen_running >= 1,
        "no server of the tour was ever seen below {tmpdir:?}"
    );
    assert!(took < Duration::from_secs(120), "the tour took {took:?}");
}

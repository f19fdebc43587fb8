//! `sys/` against real OpenBao servers: health, seal/unseal, init, leader, step-down, connect,
//! secret engines, auth methods, audit devices, the sanitized configuration, and error paths.

use crate::common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vault_ops_core::api::sys::mounts::{
    EnableAudit, EnableAuth, EnableMount, MountConfigInput, MountTune,
};
use vault_ops_core::api::sys::{HealthState, InitRequest};
use vault_ops_core::{Error, ExposeSecret, SecretString, VaultClient};
use vault_ops_testkit::{BaoConfigServer, BaoServer};

/// A client without retries (a sealed server answers 503, which would otherwise be retried).
fn client(addr: &str, token: Option<&str>) -> VaultClient {
    let mut b = VaultClient::builder()
        .address(addr)
        .max_retries(0)
        .timeout(Duration::from_secs(30));
    if let Some(t) = token {
        b = b.token(t);
    }
    b.build().expect("client")
}

async fn dev() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let c = client(&bao.addr(), Some(bao.root_token()));
    (bao, c)
}

fn api_status(e: &Error) -> u16 {
    common::api_error(e).status
}

/// `e` is Vault's 400 with a message that mentions `text`.
fn assert_400_mentioning(e: &Error, text: &str) {
    assert_eq!(api_status(e), 400, "{e}");
    assert!(common::api_error(e).mentions(text), "{e}");
}

/// The dev server's unseal key, from the "Unseal Key: ..." line of its log.
fn dev_unseal_key(bao: &BaoServer) -> SecretString {
    let log = bao.log();
    let key = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
        .unwrap_or_else(|| panic!("no 'Unseal Key:' line in the dev server log"))
        .trim()
        .to_string();
    assert!(!key.is_empty());
    SecretString::from(key)
}

/// Polls health until `want` (bounded: 100 × 100 ms).
async fn wait_health(c: &VaultClient, want: HealthState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..100 {
        if let Ok(h) = c.sys().health().await {
            if h.state == want {
                return;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health did not become {want:?}");
}

const INMEM_TEMPLATE: &str = r#"
storage "inmem" {}
listener "tcp" {
  address         = "127.0.0.1:{{PORT}}"
  cluster_address = "127.0.0.1:{{CLUSTER_PORT}}"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:{{PORT}}"
cluster_addr = "https://127.0.0.1:{{CLUSTER_PORT}}"
"#;

// ---------------------------------------------------------------- health, seal, unseal

#[tokio::test]
async fn health_and_seal_status_on_an_active_dev_server() {
    let (bao, c) = dev().await;
    let h = c.sys().health().await.expect("health");
    assert_eq!(h.state, HealthState::Active);
    assert!(h.initialized && !h.sealed && !h.standby && !h.performance_standby);
    assert!(h.version.starts_with("2."), "version {:?}", h.version);
    assert!(!h.cluster_name.is_empty() && !h.cluster_id.is_empty());
    assert!(h.server_time_utc > 1_600_000_000);

    // health needs no token
    let anon = client(&bao.addr(), None);
    assert_eq!(
        anon.sys().health().await.expect("anon health").state,
        HealthState::Active
    );

    let s = anon.sys().seal_status().await.expect("seal status");
    assert!(!s.sealed && s.initialized);
    assert_eq!(s.seal_type, "shamir");
    assert_eq!((s.threshold, s.shares, s.progress), (1, 1, 0));
    assert_eq!(s.version, h.version);
    assert_eq!(s.cluster_name.as_deref(), Some(h.cluster_name.as_str()));
    assert_eq!(s.storage_type.as_deref(), Some("inmem"));
}

#[tokio::test]
async fn seal_then_unseal_with_the_dev_key() {
    let (bao, c) = dev().await;
    c.generic()
        .write_raw("secret/data/app", &json!({"data": {"k": "v"}}))
        .await
        .expect("kv write");

    c.sys().seal().await.expect("seal");

    // health reports the sealed state as an answer, not an error
    let h = c.sys().health().await.expect("health while sealed");
    assert_eq!(h.state, HealthState::Sealed);
    assert!(h.sealed && h.initialized);
    assert!(!h.state.is_serving());

    // a KV read is a typed "sealed" error
    let e = c
        .generic()
        .read::<Value>("secret/data/app")
        .await
        .expect_err("read while sealed");
    assert!(e.is_sealed(), "{e:?}");
    assert_eq!(api_status(&e), 503);
    assert!(e.to_string().contains("Vault is sealed"), "{e}");

    // connect() says sealed too
    let e = c.connect().await.expect_err("connect while sealed");
    assert!(e.is_sealed(), "{e:?}");

    let s = c.sys().seal_status().await.expect("seal status");
    assert!(s.sealed && s.initialized);

    // a malformed key is Vault's 400, with its message
    let e = c
        .sys()
        .unseal(&SecretString::from("AAAA"))
        .await
        .expect_err("bad key");
    assert_400_mentioning(&e, "invalid key");

    let s = c.sys().unseal_reset().await.expect("unseal reset");
    assert!(s.sealed);
    assert_eq!(s.progress, 0);
    assert!(s.nonce.is_empty());

    let s = c.sys().unseal(&dev_unseal_key(&bao)).await.expect("unseal");
    assert!(!s.sealed, "{s:?}");
    wait_health(&c, HealthState::Active).await;

    let v = c
        .generic()
        .read::<Value>("secret/data/app")
        .await
        .expect("read after unseal")
        .expect("secret still there");
    assert_eq!(v.data["data"]["k"], "v");
}

#[tokio::test]
async fn leader_and_step_down_on_a_dev_server() {
    let (_bao, c) = dev().await;
    let l = c.sys().leader().await.expect("leader");
    // the dev server's in-memory storage has no HA
    assert!(!l.ha_enabled);
    assert!(!l.is_self);
    assert!(l.leader_address.is_empty());

    // without HA, step-down is accepted (204) and the node stays active
    c.sys().step_down().await.expect("step-down");
    wait_health(&c, HealthState::Active).await;

    // the client refuses to send it without a token
    let anon = client(c.address(), None);
    assert!(matches!(
        anon.sys().step_down().await,
        Err(Error::MissingToken)
    ));
    // Vault answers step-down with 204 before it checks the token (the step-down runs in the
    // background and a failure is only logged), so even a bad token gets a success here.
    let bad = c.with_token(SecretString::from("not-a-token"));
    bad.sys()
        .step_down()
        .await
        .expect("204 even for a bad token");
    wait_health(&c, HealthState::Active).await;
}

// ---------------------------------------------------------------- connect

#[tokio::test]
async fn connect_reports_the_server_and_the_token() {
    let (bao, c) = dev().await;
    let status = c.connect().await.expect("connect");
    assert_eq!(status.address, bao.addr());
    assert_eq!(status.health.state, HealthState::Active);
    assert!(!status.health.version.is_empty());
    let token = status.token.as_ref().expect("token summary");
    assert!(
        token.policies.iter().any(|p| p == "root"),
        "{:?}",
        token.policies
    );
    assert_eq!(token.ttl_seconds, 0);
    let text = status.to_string();
    assert!(text.contains(&status.health.version), "{text}");
    assert!(text.contains("never expires"), "{text}");
    assert!(!text.contains(bao.root_token()));
    assert!(!format!("{status:?}").contains(bao.root_token()));

    // without a token: server only
    let anon = client(&bao.addr(), None);
    assert!(anon.connect().await.expect("anon connect").token.is_none());

    // a bad token is a 403
    let bad = c.with_token(SecretString::from("s.not-a-real-token"));
    let e = bad.connect().await.expect_err("bad token");
    assert!(e.is_permission_denied(), "{e:?}");
    assert!(!e.is_sealed());
    assert!(!e.to_string().contains("s.not-a-real-token"), "{e}");
}

// ---------------------------------------------------------------- secret engines

#[tokio::test]
async fn mounts_enable_list_tune_disable() {
    let (_bao, c) = dev().await;
    let sys = c.sys();

    let before = sys.list_mounts().await.expect("list");
    for p in ["secret/", "sys/", "cubbyhole/", "identity/"] {
        assert!(
            before.contains_key(p),
            "{p} missing from {:?}",
            before.keys()
        );
    }
    assert_eq!(before["secret/"].mount_type, "kv");
    assert_eq!(before["secret/"].kv_version(), Some(2));
    assert_eq!(before["sys/"].kv_version(), None);
    assert!(before["cubbyhole/"].local);
    assert!(!before.contains_key("ops-kv/"));

    // trailing slash given on enable
    sys.enable_mount(
        "ops-kv/",
        &EnableMount::kv2()
            .description("ops secrets")
            .default_lease_ttl("1h"),
    )
    .await
    .expect("enable kv2");
    sys.enable_mount("pki", &EnableMount::new("pki").max_lease_ttl("87600h"))
        .await
        .expect("enable pki");

    let mounts = sys.list_mounts().await.expect("list");
    let kv = mounts.get("ops-kv/").expect("ops-kv/ listed");
    assert_eq!(kv.mount_type, "kv");
    assert_eq!(kv.options.get("version").map(String::as_str), Some("2"));
    assert_eq!(kv.kv_version(), Some(2));
    assert_eq!(kv.description, "ops secrets");
    assert!(kv.accessor.starts_with("kv_"), "{}", kv.accessor);
    assert!(!kv.uuid.is_empty());
    assert_eq!(kv.config.default_lease_ttl, 3600);
    assert!(!kv.local && !kv.seal_wrap);
    let pki = mounts.get("pki/").expect("pki/ listed");
    assert_eq!(pki.mount_type, "pki");
    assert_eq!(pki.config.max_lease_ttl, 87600 * 3600);

    // the new engine works
    c.generic()
        .write_raw("ops-kv/data/a", &json!({"data": {"x": 1}}))
        .await
        .expect("write to new mount");

    // lookups, with and without slashes
    let found = sys.mount_opt("/ops-kv").await.expect("mount_opt");
    assert_eq!(found.map(|m| m.accessor), Some(kv.accessor.clone()));
    assert!(sys
        .mount_opt("nothing-here")
        .await
        .expect("mount_opt")
        .is_none());

    let tune = sys.mount_tune("ops-kv").await.expect("tune read");
    assert_eq!(tune.default_lease_ttl, 3600);
    assert_eq!(tune.description, "ops secrets");
    assert_eq!(tune.options.get("version").map(String::as_str), Some("2"));
    assert!(tune.max_lease_ttl > 0, "effective max TTL filled in");

    sys.tune_mount(
        "ops-kv/",
        &MountTune::new()
            .max_lease_ttl("48h")
            .default_lease_ttl("2h")
            .description("tuned"),
    )
    .await
    .expect("tune");
    let tune = sys.mount_tune("/ops-kv/").await.expect("tune read");
    assert_eq!(tune.max_lease_ttl, 48 * 3600);
    assert_eq!(tune.default_lease_ttl, 2 * 3600);
    assert_eq!(tune.description, "tuned");
    assert_eq!(
        sys.list_mounts().await.expect("list")["ops-kv/"].description,
        "tuned"
    );

    // enabling a used path is Vault's 400 with its message
    let e = sys
        .enable_mount("ops-kv", &EnableMount::kv2())
        .await
        .expect_err("path in use");
    assert_400_mentioning(&e, "already in use");

    sys.disable_mount("ops-kv/").await.expect("disable kv");
    sys.disable_mount("pki").await.expect("disable pki");
    let after = sys.list_mounts().await.expect("list");
    assert!(!after.contains_key("ops-kv/") && !after.contains_key("pki/"));
    assert!(sys.mount_opt("ops-kv").await.expect("mount_opt").is_none());
    assert_eq!(after.len(), before.len());
}

#[tokio::test]
async fn mount_errors_keep_vaults_status_and_message() {
    let (_bao, c) = dev().await;
    let sys = c.sys();

    let e = sys
        .enable_mount("weird", &EnableMount::new("no-such-engine"))
        .await
        .expect_err("unknown type");
    assert_eq!(api_status(&e), 400);
    let api = e.api().expect("api error");
    assert!(api.mentions("no-such-engine"), "{e}");
    assert!(api.mentions("plugin not found"), "{e}");
    assert_eq!(api.path, "sys/mounts/weird");
    assert!(e.to_string().contains("plugin not found"), "{e}");

    // tuning something that is not mounted
    let e = sys.mount_tune("not-mounted").await.expect_err("tune read");
    assert_eq!(api_status(&e), 400);
    assert!(!e.api().expect("api").errors.is_empty());

    // an empty path never reaches the server
    for p in ["", "/", "//"] {
        assert!(
            matches!(sys.disable_mount(p).await, Err(Error::InvalidInput(_))),
            "{p:?}"
        );
        assert!(matches!(
            sys.enable_auth(p, &EnableAuth::new("approle")).await,
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            sys.enable_audit(p, &EnableAudit::file("/dev/null")).await,
            Err(Error::InvalidInput(_))
        ));
    }
    // nothing was mounted by the failed calls
    assert!(!sys
        .list_mounts()
        .await
        .expect("list")
        .contains_key("weird/"));
}

// ---------------------------------------------------------------- auth methods

#[tokio::test]
async fn auth_methods_enable_list_tune_disable() {
    let (_bao, c) = dev().await;
    let sys = c.sys();

    let before = sys.list_auth().await.expect("list auth");
    assert_eq!(before.keys().collect::<Vec<_>>(), vec!["token/"]);
    assert_eq!(before["token/"].mount_type, "token");
    assert_eq!(
        before["token/"].config.token_type.as_deref(),
        Some("default-service")
    );

    sys.enable_auth(
        "approle",
        &EnableAuth::new("approle").description("machines").config(
            MountConfigInput::new()
                .default_lease_ttl("1h")
                .listing_visibility("unauth"),
        ),
    )
    .await
    .expect("enable approle");
    sys.enable_auth("people/", &EnableAuth::new("userpass"))
        .await
        .expect("enable userpass");

    let auth = sys.list_auth().await.expect("list auth");
    let approle = auth.get("approle/").expect("approle/");
    assert_eq!(approle.mount_type, "approle");
    assert_eq!(approle.description, "machines");
    assert!(
        approle.accessor.starts_with("auth_approle_"),
        "{}",
        approle.accessor
    );
    assert_eq!(approle.config.default_lease_ttl, 3600);
    assert_eq!(approle.config.listing_visibility.as_deref(), Some("unauth"));
    assert_eq!(
        auth.get("people/").map(|m| m.mount_type.as_str()),
        Some("userpass")
    );
    assert!(sys.auth_opt("/people/").await.expect("auth_opt").is_some());

    let tune = sys.auth_tune("approle/").await.expect("auth tune");
    assert_eq!(tune.default_lease_ttl, 3600);
    assert_eq!(tune.listing_visibility.as_deref(), Some("unauth"));
    assert_eq!(tune.token_type.as_deref(), Some("default-service"));

    sys.tune_auth("approle", &MountTune::new().max_lease_ttl("5h"))
        .await
        .expect("tune auth");
    assert_eq!(
        sys.auth_tune("approle")
            .await
            .expect("auth tune")
            .max_lease_ttl,
        5 * 3600
    );

    // the method really is there: write and read a role through it
    c.generic()
        .write_raw(
            "auth/approle/role/web",
            &json!({"token_policies": ["default"]}),
        )
        .await
        .expect("role write");

    let e = sys
        .enable_auth("approle", &EnableAuth::new("approle"))
        .await
        .expect_err("path in use");
    assert_400_mentioning(&e, "already in use");

    let e = sys
        .enable_auth("odd", &EnableAuth::new("no-such-method"))
        .await
        .expect_err("unknown type");
    assert_400_mentioning(&e, "no-such-method");

    sys.disable_auth("approle/").await.expect("disable approle");
    sys.disable_auth("people").await.expect("disable userpass");
    let after = sys.list_auth().await.expect("list auth");
    assert_eq!(after.keys().collect::<Vec<_>>(), vec!["token/"]);
    assert!(sys.auth_opt("approle").await.expect("auth_opt").is_none());
}

// ---------------------------------------------------------------- audit + config

#[tokio::test]
async fn audit_devices_enable_list_disable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extra = tmp.path().join("extra.hcl");
    std::fs::write(&extra, "unsafe_allow_api_audit_creation = true\n").expect("write config");
    let bao = BaoServer::start_with_args(&[&format!("-config={}", extra.display())]).await;
    let c = client(&bao.addr(), Some(bao.root_token()));
    let sys = c.sys();

    assert!(sys.list_audit().await.expect("list audit").is_empty());

    let log_path = tmp.path().join("audit.log");
    let log_str = log_path.to_str().expect("utf-8 path").to_string();
    sys.enable_audit(
        "file-audit/",
        &EnableAudit::file(log_str.clone()).description("test audit"),
    )
    .await
    .expect("enable audit");

    let devices = sys.list_audit().await.expect("list audit");
    let d = devices.get("file-audit/").expect("file-audit/ listed");
    assert_eq!(d.device_type, "file");
    assert_eq!(d.path, "file-audit/");
    assert_eq!(d.description, "test audit");
    assert_eq!(d.options.get("file_path"), Some(&log_str));
    assert!(!d.local);

    // requests are audited into the file
    sys.list_mounts().await.expect("a request to audit");
    let written = std::fs::read_to_string(&log_path).expect("audit log exists");
    assert!(
        written.contains("sys/mounts"),
        "audit log lacks the request"
    );

    let e = sys
        .enable_audit("bogus", &EnableAudit::new("bogus-type"))
        .await
        .expect_err("unknown audit type");
    assert_400_mentioning(&e, "bogus-type");

    let cfg = sys
        .config_state_sanitized()
        .await
        .expect("sanitized config");
    assert_eq!(
        cfg.get("unsafe_allow_api_audit_creation"),
        Some(&json!(true))
    );

    sys.disable_audit("file-audit")
        .await
        .expect("disable audit");
    assert!(sys.list_audit().await.expect("list audit").is_empty());
}

#[tokio::test]
async fn audit_via_api_is_refused_by_default_and_config_is_sanitized() {
    let (bao, c) = dev().await;
    let sys = c.sys();
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("audit.log");
    let e = sys
        .enable_audit("file", &EnableAudit::file(path.to_str().expect("utf-8")))
        .await
        .expect_err("refused");
    assert_400_mentioning(&e, "cannot enable audit device via API");
    assert!(sys.list_audit().await.expect("list").is_empty());
    assert!(!path.exists());

    let cfg = sys
        .config_state_sanitized()
        .await
        .expect("sanitized config");
    assert_eq!(cfg.storage_type(), Some("inmem"));
    assert!(!cfg.listeners().is_empty());
    assert!(!cfg.listener_addresses().is_empty());
    assert_eq!(cfg.seal_types(), vec!["shamir"]);
    assert_eq!(
        cfg.get("unsafe_allow_api_audit_creation"),
        Some(&json!(false))
    );
    assert!(!cfg.raw.to_string().contains(bao.root_token()));
}

// ---------------------------------------------------------------- permissions

#[tokio::test]
async fn narrow_policy_token_is_denied_on_sys_mounts() {
    let (_bao, c) = dev().await;
    let narrow = common::narrow_client(
        &c,
        "kv-reader",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    )
    .await;
    let sys = narrow.sys();

    let e = sys.list_mounts().await.expect_err("list mounts");
    assert!(
        e.api().is_some_and(|a| a.mentions("permission denied")),
        "{e}"
    );
    for e in [
        e,
        sys.enable_mount("mine", &EnableMount::kv2())
            .await
            .expect_err("enable"),
        sys.list_auth().await.expect_err("list auth"),
        sys.list_audit().await.expect_err("list audit"),
        sys.config_state_sanitized().await.expect_err("config"),
        sys.disable_mount("secret").await.expect_err("disable"),
    ] {
        assert!(e.is_permission_denied(), "{e:?}");
    }

    // connect() works for it, and reports its policy
    let status = narrow.connect().await.expect("connect narrow");
    let t = status.token.expect("token");
    assert!(
        t.policies.iter().any(|p| p == "kv-reader"),
        "{:?}",
        t.policies
    );
    assert!(!t.policies.iter().any(|p| p == "root"));
    assert!(
        t.ttl_seconds > 0 && t.ttl_seconds <= common::NARROW_TTL_SECS as i64,
        "{}",
        t.ttl_seconds
    );

    // the denied calls changed nothing
    let mounts = c.sys().list_mounts().await.expect("root list");
    assert!(mounts.contains_key("secret/") && !mounts.contains_key("mine/"));
}

// ---------------------------------------------------------------- init

#[tokio::test]
async fn init_unseal_and_health_on_a_fresh_server() {
    let server = BaoConfigServer::start(INMEM_TEMPLATE).await;
    let c = client(&server.addr(), None);
    let sys = c.sys();

    assert!(!sys.is_initialized().await.expect("is_initialized"));
    let h = sys.health().await.expect("health before init");
    assert_eq!(h.state, HealthState::NotInitialized);
    assert!(!h.initialized);
    let e = c.connect().await.expect_err("connect before init");
    assert_eq!(e.status(), Some(501));
    assert!(!e.is_sealed());

    let init = sys.init(&InitRequest::new(1, 1)).await.expect("init");
    assert_eq!(init.keys.len(), 1);
    assert_eq!(init.keys_base64.len(), 1);
    let root = init.root_token.expose_secret().to_string();
    assert!(root.starts_with("s."), "unexpected root token shape");
    let debug = format!("{init:?}");
    assert!(!debug.contains(&root), "Debug shows the root token");
    assert!(
        !debug.contains(init.keys[0].expose_secret()),
        "Debug shows a key"
    );
    assert!(
        !debug.contains(init.keys_base64[0].expose_secret()),
        "Debug shows a key"
    );

    assert!(sys.is_initialized().await.expect("is_initialized"));
    let h = sys.health().await.expect("health after init");
    assert_eq!(h.state, HealthState::Sealed);
    let e = c.connect().await.expect_err("connect while sealed");
    assert!(e.is_sealed(), "{e:?}");

    // a second init is refused with Vault's message
    let e = sys
        .init(&InitRequest::new(1, 1))
        .await
        .expect_err("init twice");
    assert_400_mentioning(&e, "already initialized");

    let s = sys.unseal(&init.keys_base64[0]).await.expect("unseal");
    assert!(!s.sealed);
    wait_health(&c, HealthState::Active).await;

    c.set_token(init.root_token.clone());
    let status = c.connect().await.expect("connect with root");
    assert_eq!(status.health.state, HealthState::Active);
    assert!(status
        .token
        .expect("token")
        .policies
        .iter()
        .any(|p| p == "root"));
    let s = sys.seal_status().await.expect("seal status");
    assert_eq!((s.threshold, s.shares), (1, 1));
}

#[tokio::test]
async fn unseal_progress_and_reset_with_two_of_three_keys() {
    let server = BaoConfigServer::start(INMEM_TEMPLATE).await;
    let c = client(&server.addr(), None);
    let sys = c.sys();
    let init = sys.init(&InitRequest::new(3, 2)).await.expect("init");
    assert_eq!(init.keys.len(), 3);

    let s = sys.unseal(&init.keys[0]).await.expect("first key");
    assert!(s.sealed);
    assert_eq!((s.threshold, s.shares, s.progress), (2, 3, 1));
    assert!(!s.nonce.is_empty());

    let s = sys.unseal_reset().await.expect("reset");
    assert!(s.sealed);
    assert_eq!(s.progress, 0);
    assert_eq!(sys.seal_status().await.expect("status").progress, 0);

    // after the reset, one more key is not enough
    let s = sys.unseal(&init.keys[1]).await.expect("key 2");
    assert!(s.sealed);
    assert_eq!(s.progress, 1);
    let s = sys.unseal(&init.keys_base64[2]).await.expect("key 3");
    assert!(!s.sealed);
    wait_health(&c, HealthState::Active).await;
}

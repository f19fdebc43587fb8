//! `rotate`: secret rotation over vault-ops-rotation. The tool only picks the options and
//! prints the result; the rotation protocol (claim, commit, close, conflicts) is the library's.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use vault_ops_core::config::parse_duration;
use vault_ops_rotation::api_key::{Alphabet, ApiKeyOptions, ApiKeyRotator, KeyFormat};
use vault_ops_rotation::rotator::{RotationResult, RotationStatus};
use vault_ops_rotation::{DatabaseCredentialRotator, Strategy, TlsMode};

use super::daily::{kv_path, need_inner, v2_only};
use super::{read_file, read_stdin, Ctx};
use crate::cli::{DbTls, KeyAlphabet, RotateApiKeyArgs, RotateCommand, RotateDatabaseArgs};
use crate::exit;
use crate::output::{duration_text, rotation_status_text, unix_date};
use crate::report::CliError;

/// `rotate ...`: exit 0 when rotated or not due, 1 when the rotation failed, rolled back or
/// met a conflict.
pub(crate) async fn rotate(ctx: &Ctx, cmd: RotateCommand) -> Result<i32, CliError> {
    match cmd {
        RotateCommand::ApiKey(a) => api_key(ctx, a).await,
        RotateCommand::Database(a) => database(ctx, a).await,
    }
}

fn if_due(d: &Option<String>) -> Result<Option<std::time::Duration>, CliError> {
    match d {
        Some(d) => Ok(Some(
            parse_duration(d).filter(|d| !d.is_zero()).ok_or_else(|| {
                CliError::Usage(format!("--if-due {d:?} is not a duration (e.g. 7d, 24h)"))
            })?,
        )),
        None => Ok(None),
    }
}

/// The settings of a [`DatabaseCredentialRotator`], from flags or a scheduler file.
pub(crate) struct DbSettings {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub admin_user: String,
    pub admin_password_file: String,
    pub tls: DbTls,
    pub tls_ca_file: Option<std::path::PathBuf>,
    pub allow_insecure_local_dev: bool,
    pub user: Option<String>,
    pub alternate: Vec<String>,
    pub mount: String,
    pub credential_prefix: String,
    pub verify_query: Option<String>,
}

/// A database rotator for `s`; the admin password is read from its file (or stdin for `-`).
pub(crate) fn database_rotator(
    ctx: &Ctx,
    s: DbSettings,
) -> Result<DatabaseCredentialRotator, CliError> {
    let password = if s.admin_password_file == "-" {
        read_stdin("the admin password", true)?
    } else {
        read_file(
            std::path::Path::new(&s.admin_password_file),
            "the admin password file",
        )?
    };
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(CliError::Usage("the admin password is empty".into()));
    }
    let tls = match s.tls {
        DbTls::Disable => TlsMode::Disable,
        DbTls::Prefer => TlsMode::Prefer,
        DbTls::Require => TlsMode::Require,
    };
    if s.tls != DbTls::Require && !s.allow_insecure_local_dev {
        return Err(CliError::Usage(format!(
            "TLS mode {} towards {} could send the admin password in plain text; use --tls require \
             (the default; --tls-ca-file FILE for a private CA), or add --allow-insecure-local-dev \
             for a local development server",
            match s.tls {
                DbTls::Disable => "disable",
                _ => "prefer",
            },
            s.host
        )));
    }
    let mut rotator = DatabaseCredentialRotator::new(
        ctx.client.clone(),
        s.host,
        s.admin_user,
        vault_ops_core::Password::new(password),
    )
    .port(s.port)
    .database(s.database)
    .tls(tls)
    .mount(s.mount)
    .credential_prefix(s.credential_prefix);
    if let Some(file) = &s.tls_ca_file {
        rotator = rotator.tls_ca_pem(read_file(file, "the PostgreSQL CA file")?.into_bytes());
    }
    if s.allow_insecure_local_dev {
        rotator = rotator.allow_insecure_local_dev();
    }
    match (s.user, s.alternate.as_slice()) {
        (Some(u), []) => rotator = rotator.strategy(Strategy::single_user(u)),
        (None, [x, y]) => {
            rotator = rotator.strategy(Strategy::alternating_users(x.clone(), y.clone()))
        }
        (None, []) => {}
        _ => {
            return Err(CliError::Usage(
                "give either one user or exactly two alternating users".into(),
            ))
        }
    }
    if let Some(q) = s.verify_query {
        rotator = rotator.verify_query(q);
    }
    Ok(rotator)
}

/// The settings of an [`ApiKeyRotator`], from flags or a scheduler file.
pub(crate) fn api_key_options(
    mount: String,
    field: String,
    length: usize,
    alphabet: KeyAlphabet,
    key_prefix: String,
    min_versions: u64,
    state_prefix: String,
) -> Result<ApiKeyOptions, CliError> {
    let alphabet = match alphabet {
        KeyAlphabet::Alphanumeric => Alphabet::alphanumeric(),
        KeyAlphabet::Hex => Alphabet::hex_lower(),
        KeyAlphabet::Base64url => Alphabet::base64url(),
    };
    let format = KeyFormat::new(length, alphabet).prefix(key_prefix);
    format
        .validate()
        .map_err(|e| CliError::Usage(format!("invalid key format: {e}")))?;
    Ok(ApiKeyOptions::new()
        .mount(mount)
        .state_prefix(state_prefix)
        .field(field)
        .format(format)
        .min_versions(min_versions))
}

async fn database(ctx: &Ctx, a: RotateDatabaseArgs) -> Result<i32, CliError> {
    let name = super::check_path(&a.name)?;
    let every = if_due(&a.if_due)?;
    let mount = a.mount.clone();
    let rotator = database_rotator(
        ctx,
        DbSettings {
            host: a.db_host,
            port: a.db_port,
            database: a.database,
            admin_user: a.admin_user,
            admin_password_file: a.admin_password_file,
            tls: a.tls,
            tls_ca_file: a.tls_ca_file,
            allow_insecure_local_dev: a.allow_insecure_local_dev,
            user: a.user,
            alternate: a.alternate,
            mount: a.mount,
            credential_prefix: a.credential_prefix,
            verify_query: a.verify_query,
        },
    )?;
    let path = rotator.credential_path(&name);
    let result = match every {
        Some(every) => rotator.rotate_if_due(&name, every).await,
        None => rotator.rotate(&name).await,
    };
    Ok(print_result(
        ctx,
        &format!("{mount}/{}", path.trim_start_matches('/')),
        &result,
    ))
}

async fn api_key(ctx: &Ctx, a: RotateApiKeyArgs) -> Result<i32, CliError> {
    let p = kv_path(ctx, &a.path).await?;
    need_inner(&p)?;
    v2_only(&p, "rotate api-key")?;
    let every = if_due(&a.if_due)?;
    let options = api_key_options(
        p.mount.clone(),
        a.field,
        a.length,
        a.alphabet,
        a.key_prefix,
        a.min_versions,
        a.state_prefix,
    )?
    .key_prefix("");
    let rotator = ApiKeyRotator::new(ctx.client.clone()).with_options(options);
    let result = match every {
        Some(every) => rotator.rotate_generic_api_key_if_due(&p.inner, every).await,
        None => rotator.rotate_generic_api_key(&p.inner).await,
    };
    Ok(print_result(
        ctx,
        &format!("{}/{}", p.mount, p.inner),
        &result,
    ))
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Prints `r` and returns the exit code.
fn print_result(ctx: &Ctx, path: &str, r: &RotationResult) -> i32 {
    let version = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let mut rows = vec![
        ("Secret", path.to_string()),
        ("Result", rotation_status_text(r.status).to_string()),
        ("Version Before", version(r.version_before)),
        ("Version After", version(r.version_after)),
        ("Took", duration_text(r.duration.as_secs_f64())),
        (
            "Next Due",
            r.next_due_at
                .map_or_else(|| "-".into(), |t| unix_date(unix(t))),
        ),
    ];
    let error = r.error.as_ref().map(|e| e.to_string());
    if let Some(e) = &error {
        rows.push(("Error", e.clone()));
    }
    ctx.out.key_values(
        &rows,
        &json!({
            "secret": path,
            "status": r.status,
            "version_before": r.version_before,
            "version_after": r.version_after,
            "duration_seconds": r.duration.as_secs_f64(),
            "next_due_at": r.next_due_at.map(unix),
            "error": error,
        }),
    );
    match r.status {
        RotationStatus::Success | RotationStatus::SkippedNotDue => exit::OK,
        _ => exit::FAILED,
    }
}

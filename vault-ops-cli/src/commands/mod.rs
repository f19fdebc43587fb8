//! Runs the parsed command: builds the client, dispatches, and reports errors.

mod daily;
mod debug;
mod ops;
mod rotate;
mod scheduler;

use std::io::{IsTerminal, Read};
use std::path::Path;

use secrecy::SecretString;
use serde_json::{Map, Value};
use vault_ops_core::{ClientBuilder, VaultClient};
use vault_ops_k8s_auth::{KubernetesAuth, LifecycleConfig, LifecycleStatus, TokenLifecycle};

use crate::cli::{Cli, Command};
use crate::exit;
use crate::output::Output;
use crate::report::{render, CliError, Target};

/// The most bytes read from stdin or a value file (`KEY=@FILE`, policies, keys).
pub(crate) const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// What every command gets.
pub(crate) struct Ctx {
    pub client: VaultClient,
    pub out: Output,
    /// Where the address came from (for reports written by a command itself).
    pub target: Target,
    /// With `--k8s-role`: the token lifecycle's status (renewals, logins, failures, expiry),
    /// for the scheduler's /metrics.
    pub token_status: Option<tokio::sync::watch::Receiver<LifecycleStatus>>,
}

/// Runs `cli` and returns the exit code; errors are reported on stderr.
pub(crate) async fn run(cli: Cli) -> i32 {
    let mut target = Target::from_env(cli.address.as_deref());
    let mut builder = ClientBuilder::from_env();
    if let Some(a) = &cli.address {
        builder = builder.address(a.clone());
    }
    if let Some(ns) = &cli.namespace {
        builder = builder.namespace(ns.clone());
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => return fail(&CliError::Config(e), &target),
    };
    let format = match cli.output_format() {
        Ok(f) => f,
        Err(e) => return fail(&CliError::Usage(e), &target),
    };
    let lifecycle = match &cli.k8s_role {
        Some(role) => {
            match kubernetes_login(&client, role, &cli.k8s_mount, &cli.k8s_token_file).await {
                Ok(l) => Some(l),
                Err(e) => return fail(&e, &target),
            }
        }
        None => None,
    };
    let ctx = Ctx {
        client,
        out: Output { format },
        target: target.clone(),
        token_status: lifecycle.as_ref().map(TokenLifecycle::watch_status),
    };
    let result = match dispatch(&ctx, cli.command).await {
        Err(CliError::Vault(e)) if e.is_sealed() => Err(sealed_or_uninitialised(&ctx, e).await),
        other => other,
    };
    if let Some(l) = lifecycle {
        // Revokes the token (revoke_on_shutdown).
        l.shutdown().await;
    }
    // Report the node actually used (an HA client may have moved on).
    target.address = ctx.client.current_address().to_string();
    match result {
        Ok(code) => code,
        Err(e) => fail(&e, &target),
    }
}

/// `--k8s-role`: logs in with Kubernetes auth (the JWT re-read from `token_file` at every
/// login) and keeps the token fresh in the background; the token is revoked at shutdown.
async fn kubernetes_login(
    client: &VaultClient,
    role: &str,
    mount: &str,
    token_file: &Path,
) -> Result<TokenLifecycle, CliError> {
    let method = KubernetesAuth::new(role)
        .with_mount(mount)
        .with_token_file(token_file);
    TokenLifecycle::start(
        client.clone(),
        method,
        LifecycleConfig::default().revoke_on_shutdown(true),
    )
    .await
    .map_err(|e| CliError::Login(Box::new(e)))
}

/// An uninitialised server also answers "Vault is sealed": ask which it is, so the hint
/// points at `vault-ops init` rather than `vault-ops unseal`.
async fn sealed_or_uninitialised(ctx: &Ctx, e: vault_ops_core::Error) -> CliError {
    match ctx.client.sys().seal_status().await {
        Ok(s) if !s.initialized => {
            CliError::NotInitialized(format!("{e}: the server is not initialised yet"))
        }
        _ => CliError::Vault(e),
    }
}

fn fail(e: &CliError, target: &Target) -> i32 {
    eprint!("{}", render(e, target));
    e.exit_code()
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Status => daily::status(ctx).await,
        Command::Kv(c) => daily::kv(ctx, c).await.map(|_| exit::OK),
        Command::Policy(c) => daily::policy(ctx, c).await.map(|_| exit::OK),
        Command::Auth(_) => daily::auth_list(ctx).await.map(|_| exit::OK),
        Command::Secrets(_) => daily::secrets_list(ctx).await.map(|_| exit::OK),
        Command::Audit(_) => daily::audit_list(ctx).await.map(|_| exit::OK),
        Command::Token(c) => daily::token(ctx, c).await.map(|_| exit::OK),
        Command::Read(a) => daily::read(ctx, a).await.map(|_| exit::OK),
        Command::Write(a) => daily::write(ctx, a).await.map(|_| exit::OK),
        Command::List(a) => daily::list(ctx, &a.path).await.map(|_| exit::OK),
        Command::ConfigState => daily::config_state(ctx).await.map(|_| exit::OK),
        Command::Health(a) => ops::health(ctx, a).await,
        Command::Init(a) => ops::init(ctx, a).await.map(|_| exit::OK),
        Command::Seal(a) => ops::seal(ctx, a.yes).await.map(|_| exit::OK),
        Command::Unseal(a) => ops::unseal(ctx, a).await,
        Command::StepDown(a) => ops::step_down(ctx, a.yes).await.map(|_| exit::OK),
        Command::Raft(c) => ops::raft(ctx, c).await.map(|_| exit::OK),
        Command::Backup(a) => ops::backup(ctx, a).await.map(|_| exit::OK),
        Command::Restore(a) => ops::restore(ctx, a).await.map(|_| exit::OK),
        Command::Debug(a) => debug::debug(ctx, a).await.map(|_| exit::OK),
        Command::Rotate(c) => rotate::rotate(ctx, c).await,
        Command::Scheduler(c) => scheduler::scheduler(ctx, c).await,
    }
}

/// Reads all of stdin (at most [`MAX_INPUT_BYTES`]). Refuses a terminal when `what` is a
/// secret that would echo.
pub(crate) fn read_stdin(what: &str, refuse_terminal: bool) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if refuse_terminal && stdin.is_terminal() {
        return Err(CliError::Usage(format!(
            "{what} is read from stdin, which is a terminal (it would echo): pipe it in \
             (e.g. `< file`) or use a file option"
        )));
    }
    read_bounded(stdin.lock(), &format!("reading {what} from stdin"))
}

/// Reads a file (at most [`MAX_INPUT_BYTES`]).
pub(crate) fn read_file(path: &Path, what: &str) -> Result<String, CliError> {
    let f = std::fs::File::open(path).map_err(CliError::local(format!(
        "opening {what} {}",
        path.display()
    )))?;
    read_bounded(f, &format!("reading {what} {}", path.display()))
}

fn read_bounded(r: impl Read, context: &str) -> Result<String, CliError> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(CliError::local(context))?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(CliError::Usage(format!(
            "{context}: more than {} bytes",
            MAX_INPUT_BYTES
        )));
    }
    String::from_utf8(buf).map_err(|_| CliError::Usage(format!("{context}: not UTF-8 text")))
}

/// `KEY=VALUE`, `KEY=@FILE`, `KEY=-` (stdin) pairs, or a single `-` for a JSON object on
/// stdin, as a JSON object.
pub(crate) fn parse_data(args: &[String]) -> Result<Map<String, Value>, CliError> {
    if args.len() == 1 && args[0] == "-" {
        let text = read_stdin("the JSON data", false)?;
        return match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(CliError::Usage(
                "the data on stdin must be a JSON object".into(),
            )),
            Err(e) => Err(CliError::Usage(format!(
                "the data on stdin is not JSON: {e}"
            ))),
        };
    }
    let mut map = Map::new();
    let mut stdin_used = false;
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(CliError::Usage(format!(
                "{arg:?} is not KEY=VALUE (use KEY=@FILE for a file, or a single - for JSON on stdin)"
            )));
        };
        if key.is_empty() {
            return Err(CliError::Usage(format!("{arg:?} has an empty key")));
        }
        let value = if let Some(file) = value.strip_prefix('@') {
            read_file(Path::new(file), &format!("the value of {key}:"))?
        } else if value == "-" {
            if stdin_used {
                return Err(CliError::Usage(
                    "only one value can be read from stdin".into(),
                ));
            }
            stdin_used = true;
            read_stdin(&format!("the value of {key}"), false)?
                .trim_end_matches('\n')
                .to_string()
        } else {
            value.to_string()
        };
        map.insert(key.to_string(), Value::String(value));
    }
    Ok(map)
}

/// The token a `token ...` command names: `self` (None), `-` (stdin), or the value.
pub(crate) fn token_arg(arg: &str) -> Result<Option<SecretString>, CliError> {
    match arg {
        "self" => Ok(None),
        "-" => {
            let t = read_stdin("the token", true)?;
            let t = t.trim();
            if t.is_empty() {
                return Err(CliError::Usage("no token on stdin".into()));
            }
            Ok(Some(SecretString::from(t.to_string())))
        }
        t => Ok(Some(SecretString::from(t.to_string()))),
    }
}

/// Checks a path given on the command line: not empty, no `..` segments.
pub(crate) fn check_path(path: &str) -> Result<String, CliError> {
    let p = path.trim().trim_matches('/');
    if p.is_empty() {
        return Err(CliError::Usage("the path is empty".into()));
    }
    if p.split('/').any(|s| s == ".." || s == ".") {
        return Err(CliError::Usage(format!(
            "{path:?} has a `.` or `..` segment"
        )));
    }
    Ok(p.to_string())
}

/// Creates `path` for sensitive output: a new file (never an existing one, never through a
/// symlink: `O_EXCL`), mode 0600.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

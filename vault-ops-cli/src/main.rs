//! The `vault-ops` binary: see the `vault_ops_cli` library for the commands and exit codes.

fn main() {
    std::process::exit(vault_ops_cli::main_with_args(std::env::args_os()));
}

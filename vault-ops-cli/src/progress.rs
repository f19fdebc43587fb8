//! Progress bars (indicatif) on stderr, only when stderr is a terminal: piped or redirected
//! output gets no bar and no escape codes.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use vault_ops_core::api::raft::OnProgress;

/// Whether bars are drawn: stderr is a terminal.
pub(crate) fn enabled() -> bool {
    std::io::stderr().is_terminal()
}

/// A byte-count bar for a snapshot transfer, and the hook that feeds it; `None` when stderr
/// is not a terminal. The bar learns the total from the first report that has one.
pub(crate) fn transfer(label: &'static str) -> Option<(ProgressBar, OnProgress)> {
    if !enabled() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} {spinner} {bytes} {bar:30} {total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(label);
    let feed = bar.clone();
    let hook = OnProgress::new(move |p| {
        if let Some(total) = p.total {
            if feed.length() != Some(total) {
                feed.set_length(total);
            }
        }
        feed.set_position(p.bytes);
    });
    Some((bar, hook))
}

/// A bar over `steps` steps (debug's metrics samples); hidden when stderr is not a terminal.
pub(crate) fn steps(label: &'static str, steps: u64) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label);
    bar
}

//! The one progress-bar style of every command: `prefix [=====>    ] 12/80 msg 3.1/s ETA 20s`,
//! on stderr. Hidden when the caller asks for none (`--no-progress`) and, by indicatif's own
//! rule, when stderr is not a terminal, so logs and pipes stay clean.

/// A progress bar over `len` steps, or a hidden one when `show` is false.
pub fn progress_bar(show: bool, len: u64, prefix: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}

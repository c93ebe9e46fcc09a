//! One file per subcommand; each parses its arguments and calls the library.

pub mod bench;
pub mod convert;
pub mod eval;
pub mod export;
pub mod forward;
pub mod infer;
pub mod models;
pub mod test;
pub mod train;

/// The one progress-bar style of every command: `prefix [=====>    ] 12/80 3.1/s ETA 20s`.
/// Hidden when stderr is not a terminal (indicatif's own rule), so logs stay clean.
pub fn progress_bar(prefix: &str, len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{prefix} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}}");
    let style = indicatif::ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

//! Shutdown signals: the first SIGTERM / SIGINT starts a graceful stop; a second one exits
//! at once.

/// Completes on the first SIGTERM or SIGINT, and arms the second-signal exit.
pub async fn signals() {
    first_signal().await;
    tokio::spawn(async {
        first_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn first_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

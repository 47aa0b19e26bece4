//! SIGTERM/SIGINT → a stop flag checked at every training step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sets `flag` when the process receives SIGTERM or SIGINT (a second signal exits at once).
pub fn stop_on_terminate(flag: Arc<AtomicBool>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                for _ in 0..2 {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    if flag.swap(true, Ordering::SeqCst) {
                        std::process::exit(130);
                    }
                    tracing::info!("stop requested: finishing the current step");
                }
            })
        })?;
    Ok(())
}

//! A scan against a made-up `/proc`: what it costs the other tasks of
//! the runtime it runs on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use whalewatcher_discovery::Discovery;

/// A `/proc` of `n` sleeping processes, none of them an engine.
fn made_up_proc(n: u32) -> PathBuf {
    let root = std::env::temp_dir().join(format!("whalewatcher-proc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for pid in 1..=n {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).expect("a process directory");
        let stat =
            format!("{pid} (sleep) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {pid} 0");
        std::fs::write(dir.join("stat"), stat).expect("a stat");
    }
    root
}

/// The process table is read off the runtime's thread: on a
/// current-thread runtime, other tasks (a watcher's events) go on while
/// a scan reads thousands of processes.
#[tokio::test(flavor = "current_thread")]
async fn other_tasks_run_while_a_scan_reads_the_processes() {
    let root = made_up_proc(2_000);
    let discovery = Discovery::builder().proc_root(&root).build();
    let (polled, scanned) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let other = tokio::spawn({
        let (polled, scanned) = (polled.clone(), scanned.clone());
        async move {
            while !scanned.load(Ordering::Relaxed) {
                polled.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    let scan = discovery.scan().await.expect("a scan");
    let during = polled.load(Ordering::Relaxed);
    scanned.store(true, Ordering::Relaxed);
    other.await.expect("the other task");
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(scan.processes, 2_000);
    assert!(scan.engines.is_empty());
    assert!(
        during > 0,
        "no other task ran while the scan read {} processes",
        scan.processes
    );
}

//! Scans the host once and prints the engines found, those that could not
//! be watched and why, and every container with its PID here:
//! `cargo run -p whalewatcher-discovery --example discover`.

use whalewatcher_discovery::Discovery;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let discovery = Discovery::new();
    let scan = discovery.scan().await?;
    println!("{} processes looked at in {:?}", scan.processes, scan.took);
    for found in &scan.engines {
        println!(
            "found {} ({} PID {}, {} in its namespace {}) at {}",
            found.api,
            found.process,
            found.pid.local,
            found.pid.own,
            found.pid_namespace,
            found.endpoint
        );
    }
    for unreached in &scan.unreached {
        println!(
            "not watched: {} PID {} {:?}: {}",
            unreached.process, unreached.pid, unreached.api, unreached.reason
        );
    }
    let snapshot = discovery.fleet().snapshot();
    for engine in snapshot.engines() {
        let parent = engine
            .parent()
            .map(|p| format!(" in container {} of {}", p.name, p.engine))
            .unwrap_or_default();
        println!(
            "{} {} {}{parent}:",
            engine.member(),
            engine.info().engine_type,
            engine.info().api
        );
        for container in engine.containers() {
            println!(
                "    {} pid {} here {:?}",
                container.container().name(),
                container.container().pid(),
                container.local_pid()
            );
        }
    }
    discovery.close().await;
    Ok(())
}

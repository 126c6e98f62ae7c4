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
        let process = match (found.process, found.pid) {
            (Some(process), Some(pid)) => format!(
                "{process} PID {}, {} in its namespace {}",
                pid.local,
                pid.own,
                found
                    .pid_namespace
                    .as_deref()
                    .unwrap_or("(not ours to see)")
            ),
            _ => "its process unknown".to_owned(),
        };
        println!(
            "found {} ({process}) at {}, by {:?}",
            found.api, found.endpoint, found.found_by
        );
    }
    for unreached in &scan.unreached_sockets {
        println!("not watched: {unreached}");
    }
    for unreached in &scan.unreached {
        println!("not watched: {unreached}");
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

//! Follows the lifecycle events of the Docker engine (the docker CLI's
//! rules, or the endpoint given as the only argument) until Ctrl-C: first
//! the containers alive when it started, then every change.
//!
//! ```sh
//! cargo run -p whalewatcher --example follow
//! ```

use futures::StreamExt;
use whalewatcher::RetryPolicy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args().nth(1);
    let watcher = whalewatcher::docker_watcher(endpoint.as_deref(), RetryPolicy::default())?;
    let watching = watcher.spawn();
    watcher.ready().await?;

    // The snapshot and the events after it, atomically: nothing is missed
    // and nothing counted twice.
    let (snapshot, mut events) = watcher.subscribe();
    for container in snapshot.containers() {
        println!("alive    {} (pid {})", container.name(), container.pid());
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.next() => match event {
                Some(Ok(event)) => println!(
                    "{:<8} {} (pid {})",
                    event.kind,
                    event.container.name(),
                    event.container.pid()
                ),
                // Fell behind: the snapshot of a fresh subscription is the
                // way back.
                Some(Err(lagged)) => eprintln!("{lagged}"),
                None => break,
            },
        }
    }
    watching.stop().await?;
    Ok(())
}

//! The Go module's example, ported: watch the Docker engine (the docker
//! CLI's rules, or the endpoint given as the only argument), wait for the
//! first synchronization, print each project and its containers with their
//! PIDs, and stop cleanly.
//!
//! ```sh
//! cargo run -p whalewatcher --example portfolio -- unix:///var/run/docker.sock
//! ```

use whalewatcher::RetryPolicy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args().nth(1);
    // Give up at once when the engine cannot be reached: an example
    // should say so rather than retry forever.
    let watcher = whalewatcher::docker_watcher(endpoint.as_deref(), RetryPolicy::none())?;

    // Run the watch in a task of its own; dropping the handle stops it.
    let watching = watcher.spawn();

    // Depending on the application there is no need to wait for the first
    // results; here we want them.
    watcher.ready().await?;
    println!("watching engine ID: {}", watcher.id());

    // Projects sorted by name, the unnamed "" project of all standalone
    // containers first.
    let portfolio = watcher.portfolio();
    let mut projects: Vec<_> = portfolio.projects().collect();
    projects.sort_by_key(|project| project.name());
    for project in projects {
        println!("project {:?}:", project.name());
        for container in project.containers_by_name() {
            println!(
                "  container {:?} with PID {}",
                container.name(),
                container.pid()
            );
        }
        println!();
    }

    // Finally stop the watch.
    watching.stop().await?;
    watcher.close().await;
    Ok(())
}

//! The CRI's event stream and what completes it: the refusal window,
//! containerd's task events where its CRI events are one shared queue,
//! the exit reasons, and the pods the events carry.

use super::*;

/// How long an inspect after a containerd task's start waits for the CRI
/// to know the container, and have it running. On the rig's containerd
/// 1.7 every such inspect found it within 6 ms, retries included, when
/// idle. An exit while it waits ends the wait (the watcher drops the
/// inspect), so a container that died costs nothing; half the inspect
/// deadline.
pub(crate) const NOT_ALIVE_YET_WAIT: Duration = Duration::from_secs(5);

/// containerd's task events tell an exit's code, not the reason the CRI
/// gives it (`OOMKilled`): asked of the container's CRI status, as a CRI
/// event carries it, so a record reads the same on either source. The CRI
/// takes in the exit a moment after the task event: while its status still
/// says running, it is asked again, for up to [`EXIT_REASON_WAIT`]. The
/// look-ups run side by side (the events keep their order), so one slow
/// answer holds the others up by that much at most. A sandbox, a container
/// gone, or one in another state (unknown after an engine restart) keeps
/// what the task event said.
pub(crate) fn with_exit_reasons(
    events: EngineEvents,
    client: RuntimeServiceClient<Channel>,
) -> EngineEvents {
    events
        .map(move |item| {
            let mut client = client.clone();
            async move {
                let mut event = match item {
                    Ok(event) if event.kind == EventKind::Exited => event,
                    other => return other,
                };
                if let Some(status) = exited_status(&mut client, &event.id).await {
                    let exit = event.exit.get_or_insert_with(Exit::default);
                    exit.code = exit.code.or(Some(status.exit_code));
                    exit.oom_killed =
                        Some(exit.oom_killed == Some(true) || status.reason == "OOMKilled");
                }
                Ok(event)
            }
        })
        .buffered(EXIT_REASON_LOOKUPS)
        .boxed()
}

/// How long an exit's reason is waited for while the CRI still says the
/// container runs.
pub(crate) const EXIT_REASON_WAIT: Duration = Duration::from_millis(500);

/// Exit reasons looked up at once.
pub(crate) const EXIT_REASON_LOOKUPS: usize = 16;

/// The CRI status of container `id` once it says exited; `None` for a
/// sandbox, a container gone or in another state, or one the CRI has not
/// seen exit within [`EXIT_REASON_WAIT`].
pub(crate) async fn exited_status(
    client: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> Option<ContainerStatus> {
    let deadline = tokio::time::Instant::now() + EXIT_REASON_WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        let request = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let asking = tokio::time::timeout_at(deadline, client.container_status(request));
        let status = asking.await.ok()?.ok()?.into_inner().status?;
        if status.state == ContainerState::ContainerExited as i32 {
            return Some(status);
        }
        if status.state != ContainerState::ContainerRunning as i32
            || tokio::time::Instant::now() >= deadline
        {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// containerd's namespace of the CRI's containers and sandboxes.
pub(crate) const CRI_NAMESPACE: &str = "k8s.io";

/// Whether the runtime is a containerd 1.7, whose CRI event call serves
/// all its callers from one queue (containerd 2.0 gave each stream every
/// event; 1.6 has no CRI events at all, and says so). Its version reads
/// `1.7.24~ds1` (Debian) or `v1.7.24`.
pub(crate) fn shares_one_event_queue(version: &k8s_cri::v1::VersionResponse) -> bool {
    let mut numbers = version
        .runtime_version
        .trim_start_matches('v')
        .split(['.', '~', '+', '-'])
        .map(|part| part.parse::<u32>().ok());
    let (major, minor) = (numbers.next().flatten(), numbers.next().flatten());
    version.runtime_name == "containerd"
        && major == Some(1)
        && minor.is_some_and(|minor| minor >= 7)
}

/// Version round trips, one after the other, that an engine refusing the
/// event call gets to answer first. Measured against containerd 1.6, which
/// refuses it: the refusal came after the barrier in 112 of 300
/// subscriptions with one round trip, 2 of 300 with two, none of 3,000
/// with five (about 1 ms in all) on an idle machine.
pub(crate) const BARRIER_ROUND_TRIPS: usize = 5;

/// How long after the event call a refusal may still come. Round trips
/// alone are not enough under load: Go's scheduler runs each new version
/// handler before the older event handler, so with the cores busy
/// containerd 1.6 refused after 7 round trips and 14 ms, and a CI run saw
/// 1 of 300 refusals after five. The list after a subscription answers no
/// earlier (a list of 125 containers and sandboxes takes about as long).
pub(crate) const REFUSAL_WINDOW: Duration = Duration::from_millis(50);

pub(crate) type Call =
    BoxFuture<'static, Result<Response<Streaming<ContainerEventResponse>>, Status>>;

/// Where an event stream stands.
pub(crate) enum Feed {
    /// The call is not answered yet: no event so far.
    Calling(Call),
    /// The stream is open; whether any event came through.
    Open(Box<Streaming<ContainerEventResponse>>, bool),
    /// The stream failed or ended, and that was reported.
    Done,
}

/// The lifecycle events of `feed`, remembering the pods they carry.
pub(crate) fn follow(
    feed: Feed,
    api: String,
    pods: Arc<Mutex<HashMap<String, Pod>>>,
) -> EngineEvents {
    futures::stream::unfold(feed, move |mut feed| {
        let (api, pods) = (api.clone(), pods.clone());
        async move {
            loop {
                feed = match feed {
                    Feed::Calling(call) => match call.await {
                        Ok(response) => Feed::Open(Box::new(response.into_inner()), false),
                        Err(status) => return Some((Err(events_error(&api, status)), Feed::Done)),
                    },
                    Feed::Open(mut stream, seen) => match stream.message().await {
                        Ok(Some(event)) => {
                            remember_pod(&pods, &event);
                            if let Some(event) = convert::engine_event(&event) {
                                return Some((Ok(event), Feed::Open(stream, true)));
                            }
                            Feed::Open(stream, true)
                        }
                        Ok(None) if !seen => {
                            let error = EngineError::Unsupported {
                                endpoint: api,
                                what: EVENTS_DISABLED.to_owned(),
                            };
                            return Some((Err(error), Feed::Done));
                        }
                        Ok(None) => {
                            let error = EngineError::StreamEnded { endpoint: api };
                            return Some((Err(error), Feed::Done));
                        }
                        Err(status) => return Some((Err(events_error(&api, status)), Feed::Done)),
                    },
                    Feed::Done => return None,
                }
            }
        }
    })
    .boxed()
}

/// Keeps the pod a container event carries, so inspecting the container
/// needs no extra round trip; forgets a deleted sandbox's.
fn remember_pod(pods: &Mutex<HashMap<String, Pod>>, event: &ContainerEventResponse) {
    let Some(sandbox) = &event.pod_sandbox_status else {
        return;
    };
    let deleted =
        event.container_event_type == k8s_cri::v1::ContainerEventType::ContainerDeletedEvent as i32;
    let mut pods = pods.lock().unwrap_or_else(PoisonError::into_inner);
    if deleted && event.container_id == sandbox.id {
        pods.remove(&sandbox.id);
    } else if !deleted && !sandbox.id.is_empty() {
        pods.entry(sandbox.id.clone())
            .or_insert_with(|| convert::pod_of(sandbox));
    }
}

/// A typed error for a failed event stream: `Unimplemented` means an
/// engine without container events.
pub(crate) fn events_error(api: &str, status: Status) -> EngineError {
    match status.code() {
        Code::Unimplemented => EngineError::Unsupported {
            endpoint: api.to_owned(),
            what: NO_EVENTS.to_owned(),
        },
        _ => status_error(api, &status, None, "the CRI v1 runtime API"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(name: &str, version: &str) -> k8s_cri::v1::VersionResponse {
        k8s_cri::v1::VersionResponse {
            runtime_name: name.into(),
            runtime_version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_containerd_before_2_shares_one_cri_event_queue() {
        // As the rig's engines and upstream builds name themselves.
        assert!(shares_one_event_queue(&runtime("containerd", "1.7.24~ds1")));
        assert!(shares_one_event_queue(&runtime("containerd", "v1.7.27")));
        // 1.6 refuses the CRI event call: "unsupported", as it should.
        assert!(!shares_one_event_queue(&runtime(
            "containerd",
            "1.6.20~ds1"
        )));
        assert!(!shares_one_event_queue(&runtime(
            "containerd",
            "2.1.9+unknown"
        )));
        assert!(!shares_one_event_queue(&runtime("containerd", "v2.0.0")));
        assert!(!shares_one_event_queue(&runtime("cri-o", "1.31.0")));
        assert!(!shares_one_event_queue(&runtime("containerd", "")));
    }
}

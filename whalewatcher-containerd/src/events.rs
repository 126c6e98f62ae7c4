//! containerd's event service as lifecycle events: a live subscription
//! (a published marker proves it), and the task events of the watched
//! namespaces.

use super::*;

/// The lifecycle events of the containers of one containerd namespace,
/// from containerd's event service on `channel` (containerd at `api`),
/// once the subscription is live: for an engine that reads a containerd's
/// containers through another API. The CRI engine does on containerd
/// before 2.0, whose CRI event call serves all its callers from one queue
/// (they split the events); the event service tells every subscriber
/// everything. Events carry the ids as the namespace names them (no
/// `namespace/` prefix); an exec'd process that ends is no event.
pub async fn namespace_task_events(
    channel: &Channel,
    namespace: &str,
    api: &str,
) -> Result<EngineEvents, EngineError> {
    let filters: Vec<String> = TOPICS
        .iter()
        .map(|topic| format!("namespace=={namespace:?},topic=={topic:?}"))
        .collect();
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    let events = live_subscription(channel, &filters)
        .await
        .map_err(|status| status_error(api, &status, None, "containerd's event service"))?;
    let prefix = format!("{namespace}/");
    let namespace = namespace.to_owned();
    let events = task_events(events, api.to_owned(), move |ns| ns == namespace);
    Ok(Box::pin(events.map(move |item| {
        item.map(|mut event| {
            if let Some(id) = event.id.strip_prefix(&prefix) {
                event.id = id.to_owned();
            }
            event
        })
    })))
}

/// The lifecycle events in containerd's `events` of the namespaces `keep`
/// says yes to, with display ids; an OOM kill is told on the exit after it.
pub(crate) fn task_events(
    events: Streaming<Envelope>,
    api: String,
    keep: impl Fn(&str) -> bool + Send + 'static,
) -> EngineEvents {
    let mut oom_kills = whalewatcher_core::OomKills::default();
    Box::pin(events.filter_map(move |item| {
        let mapped = match item {
            Ok(envelope) if !keep(&envelope.namespace) => None,
            Ok(envelope) => match convert::oom_killed(&envelope) {
                Some(id) => {
                    oom_kills.reported(id);
                    None
                }
                None => convert::engine_event(&envelope).map(|mut event| {
                    oom_kills.take_in(&mut event);
                    Ok(event)
                }),
            },
            Err(status) => Some(Err(EngineError::unreachable(
                api.clone(),
                readable(&status),
            ))),
        };
        async move { mapped }
    }))
}

// Hidden from the docs: support for this workspace's tests and
// benchmarks, not API that users may rely on.
#[doc(hidden)]
/// Subscribes to containerd's events matching `filters` (containerd filter
/// syntax) and returns once the subscription is live.
///
/// containerd answers a subscription only with its first event, which may
/// be any matching one, so awaiting the call says nothing about when the
/// subscription went live. Markers are published on [`BARRIER_TOPIC`]
/// until one comes through; markers published before the subscription
/// existed are lost, hence the repetition. Events before the first marker
/// are dropped (they are older than anything listed afterwards); later
/// markers stay in the stream, for the caller to skip by topic.
pub async fn live_subscription(
    channel: &Channel,
    filters: &[&str],
) -> Result<Streaming<Envelope>, Status> {
    let mut filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
    filters.push(format!("topic==\"{BARRIER_TOPIC}\""));
    let mut client = EventsClient::new(channel.clone());
    let subscribing = client.subscribe(SubscribeRequest { filters });
    tokio::pin!(subscribing);
    // Usually the second marker gets through: start soon, back off to a
    // tenth of a second while containerd is slow.
    let mut wait = Duration::from_millis(1);
    let longer = |wait: &mut Duration| *wait = (*wait * 2).min(Duration::from_millis(100));
    let mut events = loop {
        publish_marker(channel).await?;
        tokio::select! {
            subscribed = &mut subscribing => break subscribed?.into_inner(),
            _ = tokio::time::sleep(wait) => longer(&mut wait),
        }
    };
    loop {
        match tokio::time::timeout(wait, events.next()).await {
            Ok(Some(Ok(envelope))) if envelope.topic == BARRIER_TOPIC => return Ok(events),
            Ok(Some(Ok(_older))) => {}
            Ok(Some(Err(status))) => return Err(status),
            Ok(None) => return Err(Status::unavailable("containerd's event stream ended")),
            Err(_) => {
                publish_marker(channel).await?;
                longer(&mut wait);
            }
        }
    }
}

async fn publish_marker(channel: &Channel) -> Result<(), Status> {
    let marker = PublishRequest {
        topic: BARRIER_TOPIC.to_owned(),
        event: Some(prost_types::Any {
            type_url: "whalewatcher/barrier".to_owned(),
            value: Vec::new(),
        }),
    };
    let mut request = Request::new(marker);
    request.metadata_mut().insert(
        "containerd-namespace",
        MetadataValue::from_static("default"),
    );
    EventsClient::new(channel.clone())
        .publish(request)
        .await
        .map(|_| ())
}

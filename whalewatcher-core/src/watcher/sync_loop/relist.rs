//! The relist: the list, the events that arrive while it is in flight,
//! the exits of containers lost unheard, and its publication as the
//! difference to what subscribers saw.

use super::*;

impl SyncLoop {
    /// Lists while holding back the events that arrive meanwhile, applies
    /// them in engine order to the list's result, then publishes that with
    /// the difference to what subscribers have seen.
    pub(super) async fn relist(
        &mut self,
        events: &mut EngineEvents,
        stop: &Stop,
    ) -> Result<(), Interrupt> {
        let engine = self.shared.engine.clone();
        let listing = within(
            self.shared.deadlines.list,
            engine.api(),
            "list",
            engine.list_with_omissions(),
        );
        tokio::pin!(listing);
        let mut during_list = Vec::new();
        let listed = loop {
            tokio::select! {
                biased;
                _ = stop.stopped() => return Err(Interrupt::Stopped),
                // Events before the list: an event already delivered when
                // the list answers must be held back, not applied after
                // the list is published (the container would flash up).
                item = events.next() => match item {
                    Some(Ok(event)) => during_list.push(event),
                    Some(Err(error)) => return Err(Interrupt::Lost(error, Call::Events)),
                    None => return Err(Interrupt::Lost(self.stream_ended(), Call::Events)),
                },
                listed = &mut listing => match listed {
                    Ok(listed) => break listed,
                    Err(error) => return Err(Interrupt::Lost(error, Call::List)),
                },
                // Only a safety relist has inspections in flight; their
                // results go out as usual while the list is pending.
                Some(done) = self.inspections.next_done() => {
                    let shared = self.shared.clone();
                    let mut working = lock(&shared.current);
                    let changes = self.apply_inspection(&mut working, done)?;
                    self.publish(&mut working, changes);
                }
                () = describing(&mut self.describing) => {}
            }
        };
        let Listing {
            containers: listed,
            omitted,
        } = listed;
        for omission in &omitted {
            warn!(%omission, "the list left a part of the engine out");
        }
        self.shared.report(Transition::Listed { omitted });
        let exits = self
            .exits_of_the_unheard(&listed, &during_list, stop)
            .await?;
        self.take_in_list(listed, during_list, &exits);
        Ok(())
    }

    /// How the containers exited that the list lost without an event held
    /// back for them, as far as the engine still tells (within the inspect
    /// deadline; nothing, when it cannot).
    async fn exits_of_the_unheard(
        &mut self,
        listed: &[Container],
        during_list: &[EngineEvent],
        stop: &Stop,
    ) -> Result<HashMap<Arc<str>, Exit>, Interrupt> {
        let listed: HashSet<&str> = listed.iter().map(Container::id).collect();
        let told: HashSet<&str> = during_list
            .iter()
            .filter(|event| event.kind == EventKind::Exited)
            .map(|event| event.id.as_str())
            .collect();
        let unheard: Vec<Arc<str>> = lock(&self.shared.current)
            .containers()
            .map(|container| container.shared_id())
            .filter(|id| !listed.contains(id.as_ref()) && !told.contains(id.as_ref()))
            .cloned()
            .collect();
        if unheard.is_empty() {
            return Ok(HashMap::new());
        }
        let engine = self.shared.engine.clone();
        let asking = tokio::time::timeout(self.shared.deadlines.inspect, engine.exits(&unheard));
        tokio::select! {
            _ = stop.stopped() => Err(Interrupt::Stopped),
            exits = asking => Ok(exits.unwrap_or_default()),
        }
    }

    /// Publishes the list's result brought up to date by the events held
    /// back during the list, with the difference to what subscribers saw
    /// before. The new portfolio is made beside the published one, which
    /// readers keep seeing until it is complete (make-before-break).
    fn take_in_list(
        &mut self,
        listed: Vec<Container>,
        during_list: Vec<EngineEvent>,
        exits: &HashMap<Arc<str>, Exit>,
    ) {
        let _span = debug_span!("take_in_list").entered();
        let seen = lock(&self.shared.current).clone();
        let mut working = seen.clone();
        let listed = listed
            .into_iter()
            .map(|container| container.with_shared_strings(&mut self.strings))
            .collect();
        let mut touched: HashSet<Arc<str>> = working.replace_all(listed).into_iter().collect();
        debug!(
            listed = working.len(),
            during_list = during_list.len(),
            "list complete"
        );
        // The held-back events happened after the subscription, so after or
        // during the list: a container that died is removed (the list must
        // not resurrect it), pause changes are replayed, and a start the
        // list missed is inspected. Their own changes are subsumed in the
        // difference below.
        for event in &during_list {
            touched.insert(Arc::from(event.id.as_str()));
            self.apply_event(&mut working, event.clone());
        }
        let mut difference = Difference::default();
        for id in &touched {
            difference.add(seen.container(id), working.container(id));
        }
        // A change the engine reported while the list was in flight keeps
        // its source and time (of the last such report).
        let reported: HashMap<(&str, EventKind), &EngineEvent> = during_list
            .iter()
            .map(|event| ((event.id.as_str(), event.kind), event))
            .collect();
        let changes = difference
            .into_events()
            .into_iter()
            .map(|(kind, container)| {
                let reported = reported.get(&(container.id(), kind)).copied();
                match reported {
                    Some(reported) => {
                        let mut event =
                            event_of(kind, container, EventSource::Engine, reported.timestamp);
                        event.exit = reported.exit;
                        event
                    }
                    None => {
                        let mut event = event_of(kind, container, EventSource::Sync, None);
                        if kind == EventKind::Exited {
                            event.exit = exits.get(event.container.id()).copied();
                        }
                        event
                    }
                }
            })
            .collect();
        let shared = self.shared.clone();
        let mut current = lock(&shared.current);
        // Only this loop changes it: it is still `seen`.
        let replaced = std::mem::replace(&mut *current, working);
        self.publish(&mut current, changes);
        drop(current);
        // What only the old portfolio held is freed outside the lock.
        drop((replaced, seen));
    }
}

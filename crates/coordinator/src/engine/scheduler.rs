//! The engine's scheduler: one task owns the queue of lanes (no locks),
//! decides what runs, supersedes stale work, sweeps deadlines, and (on a
//! replica) keeps the lane leases. See the engine's opening comment for the
//! lane semantics.

#[allow(clippy::wildcard_imports)]
use super::*;
// ---------------------------------------------------------------------------
// Scheduler

pub(super) type TaskKey = (String, String);
pub(super) type LaneKey = (String, String);
pub(super) type Order = (i64, i64);

pub(super) enum SchedulerMessage {
    /// Tasks to run: recovered at start, or accepted by this process (a
    /// replica queues those of lanes it holds and claims the others).
    Enqueue(Vec<TaskRecord>),
    Finished(Box<TaskRecord>, Outcome),
    Released(Box<TaskRecord>),
    /// Replica: lanes of accepted tasks that another replica holds.
    Unclaimed(Vec<LaneKey>),
    /// Replica: lanes just claimed, with their stored tasks and watermarks.
    Claimed {
        lanes: Vec<LaneKey>,
        state: LaneState,
        at: i64,
    },
    /// Replica: what the lease loop needs this round.
    Poll {
        renew: bool,
        reply: oneshot::Sender<PollView>,
    },
    /// Replica: lanes whose lease was found lost at `as_of`.
    Lost {
        lanes: Vec<LaneKey>,
        as_of: i64,
    },
    /// Replica: the stored unfinished tasks of held lanes; answers which
    /// ones this process does not know as stored (new, or released by an
    /// approval on another replica).
    Unknown {
        stored: Vec<(String, String, TaskState)>,
        reply: oneshot::Sender<Vec<TaskKey>>,
    },
    /// Replica: rows asked for after `Unknown`.
    Loaded(Vec<TaskRecord>),
    /// Supersede these tasks unless running (see [`Engine::cancel_tasks`]).
    Cancel {
        tasks: Vec<TaskKey>,
        reason: String,
    },
}

/// The scheduler's answer to the lease loop.
#[derive(Debug, Default)]
pub(super) struct PollView {
    /// Lanes of accepted tasks this replica does not hold yet.
    pub(super) pending_claims: Vec<LaneKey>,
    /// Unfinished tasks held in memory.
    pub(super) backlog: usize,
    /// Lanes held with work in them (to renew), when asked for.
    pub(super) working_lanes: Vec<LaneKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Done,
    /// The target could not be reached (counts towards the breaker).
    Unreachable,
    /// Replica: a write was refused because the lane's lease was lost.
    LeaseLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotStatus {
    Waiting,
    Queued,
    InFlight,
}

pub(super) struct Slot {
    pub(super) record: TaskRecord,
    pub(super) status: SlotStatus,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReadyItem {
    pub(super) urgent: bool,
    pub(super) order: Reverse<Order>,
    pub(super) key: TaskKey,
}

#[derive(Default)]
pub(super) struct Breaker {
    pub(super) failures: u32,
    pub(super) open_until: i64,
}

pub(super) struct Scheduler {
    pub(super) inner: Arc<Inner>,
    pub(super) slots: HashMap<TaskKey, Slot>,
    pub(super) lanes: HashMap<LaneKey, BTreeSet<(Order, TaskKey)>>,
    pub(super) watermarks: HashMap<LaneKey, Order>,
    pub(super) ready: HashMap<String, BinaryHeap<ReadyItem>>,
    pub(super) in_flight: HashMap<String, usize>,
    pub(super) breakers: HashMap<String, Breaker>,
    pub(super) timers: BinaryHeap<Reverse<(i64, LaneKey)>>,
    pub(super) dirty: HashSet<LaneKey>,
    pub(super) last_sweep: i64,
    /// Replica: the lanes held, with when each was claimed (Unix ms); `None`
    /// for a single coordinator, which holds every lane.
    pub(super) held: Option<HashMap<LaneKey, i64>>,
    /// Replica: lanes of accepted tasks to claim.
    pub(super) pending_claims: HashSet<LaneKey>,
    /// Replica: tasks finished here recently (Unix ms), so a stale read of
    /// the store does not queue them again.
    pub(super) finished_recently: HashMap<TaskKey, i64>,
}

/// How long a finished task is remembered against stale reads.
pub(super) const FINISHED_MEMORY_MS: i64 = 120_000;

pub(super) fn order(task: &TaskRecord) -> Order {
    (task.effective_at, task.event_seq)
}

pub(super) fn lane(task: &TaskRecord) -> LaneKey {
    (task.person_id.clone(), task.target_id.clone())
}

pub(super) fn key(task: &TaskRecord) -> TaskKey {
    (task.event_id.clone(), task.target_id.clone())
}

impl Scheduler {
    pub(super) fn new(inner: Arc<Inner>, watermarks: HashMap<LaneKey, Order>, replica: bool) -> Self {
        Self {
            inner,
            slots: HashMap::new(),
            lanes: HashMap::new(),
            watermarks,
            ready: HashMap::new(),
            in_flight: HashMap::new(),
            breakers: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: HashSet::new(),
            last_sweep: 0,
            held: replica.then(HashMap::new),
            pending_claims: HashSet::new(),
            finished_recently: HashMap::new(),
        }
    }

    pub(super) fn holds(&self, lane_key: &LaneKey) -> bool {
        self.held.as_ref().is_none_or(|held| held.contains_key(lane_key))
    }

    /// Forgets a lane this replica no longer holds: its waiting tasks are
    /// dropped (the new holder runs them from the store); an in-flight one
    /// is dropped when its worker returns (its writes are fenced).
    pub(super) fn drop_lane(&mut self, lane_key: &LaneKey) {
        if let Some(held) = self.held.as_mut() {
            held.remove(lane_key);
        }
        self.watermarks.remove(lane_key);
        let Some(lane) = self.lanes.remove(lane_key) else { return };
        let mut keep = BTreeSet::new();
        for entry in lane {
            match self.slots.get(&entry.1) {
                Some(slot) if slot.status == SlotStatus::InFlight => {
                    keep.insert(entry);
                }
                _ => {
                    self.slots.remove(&entry.1);
                }
            }
        }
        if !keep.is_empty() {
            self.lanes.insert(lane_key.clone(), keep);
        }
        tracing::info!(person = %lane_key.0, target = %lane_key.1, "lane lease lost; left to its new holder");
    }

    pub(super) fn poll_view(&mut self, renew: bool) -> PollView {
        if renew && let Some(held) = self.held.as_mut() {
            // A lane left without work is no longer renewed, so it is no
            // longer held: its next task is claimed again first.
            held.retain(|lane_key, _| self.lanes.contains_key(lane_key));
        }
        PollView {
            pending_claims: self.pending_claims.iter().cloned().collect(),
            backlog: self.slots.len(),
            working_lanes: if renew { self.lanes.keys().cloned().collect() } else { Vec::new() },
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SchedulerMessage>) {
        loop {
            let now = now_ms();
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at).unwrap_or(now + 250);
            let wait = Duration::from_millis(u64::try_from((next_timer - now).clamp(1, 250)).unwrap_or(250));
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { return };
                    self.handle(message);
                    while let Ok(message) = rx.try_recv() {
                        self.handle(message);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
            let now = now_ms();
            while let Some(Reverse((at, _))) = self.timers.peek() {
                if *at > now {
                    break;
                }
                if let Some(Reverse((_, lane))) = self.timers.pop() {
                    self.dirty.insert(lane);
                }
            }
            let dirty: Vec<LaneKey> = self.dirty.drain().collect();
            for lane in dirty {
                self.evaluate(&lane, now);
            }
            self.dispatch(now);
            if now - self.last_sweep >= 1000 {
                self.last_sweep = now;
                self.finished_recently.retain(|_, at| now - *at < FINISHED_MEMORY_MS);
                self.sweep_deadlines(now);
                CoordinatorMetrics::get().refresh_queue(self.slots.values().map(|slot| &slot.record), now);
            }
        }
    }

    pub(super) fn handle(&mut self, message: SchedulerMessage) {
        match message {
            SchedulerMessage::Enqueue(tasks) => {
                for task in tasks {
                    if self.holds(&lane(&task)) {
                        self.enqueue(task);
                    } else {
                        // Claimed by the lease loop, which loads it from the store.
                        self.pending_claims.insert(lane(&task));
                    }
                }
            }
            SchedulerMessage::Claimed { lanes, state, at } => {
                for lane_key in lanes {
                    self.pending_claims.remove(&lane_key);
                    if let Some(held) = self.held.as_mut() {
                        held.insert(lane_key, at);
                    }
                }
                for (lane_key, mark) in state.watermarks {
                    let entry = self.watermarks.entry(lane_key).or_insert(mark);
                    if mark > *entry {
                        *entry = mark;
                    }
                }
                for task in state.tasks {
                    if self.holds(&lane(&task)) {
                        self.enqueue(task);
                    }
                }
            }
            SchedulerMessage::Unclaimed(lanes) => {
                for lane_key in lanes {
                    self.pending_claims.remove(&lane_key);
                }
            }
            SchedulerMessage::Poll { renew, reply } => {
                let _ = reply.send(self.poll_view(renew));
            }
            SchedulerMessage::Lost { lanes, as_of } => {
                for lane_key in lanes {
                    let claimed_at = self.held.as_ref().and_then(|held| held.get(&lane_key)).copied();
                    if claimed_at.is_some_and(|at| at <= as_of) {
                        self.drop_lane(&lane_key);
                    }
                }
            }
            SchedulerMessage::Unknown { stored, reply } => {
                let wanted = stored
                    .into_iter()
                    .filter(|(event_id, target_id, state)| {
                        let task_key = (event_id.clone(), target_id.clone());
                        match self.slots.get(&task_key) {
                            Some(slot) => {
                                slot.record.state == TaskState::AwaitingApproval && *state == TaskState::Planned
                            }
                            None => !self.finished_recently.contains_key(&task_key),
                        }
                    })
                    .map(|(event_id, target_id, _)| (event_id, target_id))
                    .collect();
                let _ = reply.send(wanted);
            }
            SchedulerMessage::Loaded(tasks) => {
                for task in tasks {
                    let task_key = key(&task);
                    if self.finished_recently.contains_key(&task_key) {
                        continue;
                    }
                    if !self.holds(&lane(&task)) {
                        // Still this replica's in the store, no longer here:
                        // claimed again, then loaded with its lane.
                        self.pending_claims.insert(lane(&task));
                        continue;
                    }
                    match self.slots.get_mut(&task_key) {
                        Some(slot) => {
                            // Approved or replanned on another replica.
                            if slot.record.state == TaskState::AwaitingApproval && task.state == TaskState::Planned {
                                slot.record = task;
                                self.dirty.insert(lane(&slot.record));
                            }
                        }
                        None => self.enqueue(task),
                    }
                }
            }
            SchedulerMessage::Finished(task, outcome) => {
                let target = task.target_id.clone();
                if let Some(count) = self.in_flight.get_mut(&target) {
                    *count = count.saturating_sub(1);
                }
                if outcome == Outcome::LeaseLost {
                    let lane_key = lane(&task);
                    if let Some(slot) = self.slots.get_mut(&key(&task)) {
                        slot.status = SlotStatus::Waiting;
                    }
                    self.drop_lane(&lane_key);
                    return;
                }
                let breaker = self.breakers.entry(target).or_default();
                if outcome == Outcome::Unreachable {
                    breaker.failures += 1;
                    if breaker.failures >= self.inner.config.breaker_threshold {
                        let cooldown = i64::try_from(self.inner.config.breaker_cooldown.as_millis()).unwrap_or(5000);
                        breaker.open_until = now_ms() + cooldown;
                        tracing::warn!(target = %task.target_id, "circuit breaker open");
                    }
                } else {
                    breaker.failures = 0;
                }
                self.settle(*task);
            }
            SchedulerMessage::Cancel { tasks, reason } => {
                for task_key in tasks {
                    let Some(slot) = self.slots.get(&task_key) else { continue };
                    if slot.status != SlotStatus::InFlight {
                        let lane_key = lane(&slot.record);
                        self.remove_and_supersede(&task_key, &reason);
                        self.dirty.insert(lane_key);
                    }
                }
            }
            SchedulerMessage::Released(task) => {
                if let Some(slot) = self.slots.get_mut(&key(&task))
                    && slot.record.state == TaskState::AwaitingApproval
                {
                    slot.record = *task;
                    self.dirty.insert(lane(&slot.record));
                }
            }
        }
    }

    pub(super) fn enqueue(&mut self, mut task: TaskRecord) {
        let lane_key = lane(&task);
        if task.state.is_terminal() || self.slots.contains_key(&key(&task)) {
            return;
        }
        // Dispatched or acknowledged when the process running it stopped:
        // dispatched again with the same command id (idempotent).
        if matches!(task.state, TaskState::Dispatched | TaskState::Acknowledged) {
            task.state = TaskState::Planned;
        }
        if self.watermarks.get(&lane_key).is_some_and(|mark| *mark > order(&task)) {
            self.supersede(
                task,
                "stale: a later-effective event for this person was already dispatched to this target",
            );
            return;
        }
        if task.urgent {
            let others: Vec<TaskKey> =
                self.lanes.get(&lane_key).map(|lane| lane.iter().map(|(_, k)| k.clone()).collect()).unwrap_or_default();
            for other in others {
                if self.slots.get(&other).is_some_and(|s| s.status != SlotStatus::InFlight) {
                    self.remove_and_supersede(&other, "superseded by an urgent leaver");
                }
            }
        }
        self.lanes.entry(lane_key.clone()).or_default().insert((order(&task), key(&task)));
        self.slots.insert(key(&task), Slot { record: task, status: SlotStatus::Waiting });
        self.dirty.insert(lane_key);
    }

    pub(super) fn remove_and_supersede(&mut self, task_key: &TaskKey, reason: &str) {
        if let Some(slot) = self.slots.remove(task_key) {
            if let Some(lane) = self.lanes.get_mut(&lane(&slot.record)) {
                lane.remove(&(order(&slot.record), task_key.clone()));
            }
            self.supersede(slot.record, reason);
        }
    }

    /// Persists a task as superseded, in the background.
    pub(super) fn supersede(&mut self, mut task: TaskRecord, reason: &str) {
        let inner = self.inner.clone();
        let now = now_ms();
        if self.held.is_some() {
            self.finished_recently.insert(key(&task), now);
        }
        task.state = TaskState::Superseded;
        self.inner.dispatch_spans.forget(&task.event_id, &task.target_id);
        task.finished_at = Some(now);
        task.next_attempt_at = None;
        task.last_error = reason.to_owned();
        let audit = AuditEntry {
            at: now,
            principal: "coordinator".into(),
            event_id: task.event_id.clone(),
            action: "task.superseded".into(),
            payload: json!({ "target_id": task.target_id, "reason": reason }),
        };
        tokio::spawn(async move {
            let event_id = task.event_id.clone();
            match inner.save_task(task, vec![audit]).await {
                Ok(Some(state)) => {
                    let _ = inner.finished.send((event_id.clone(), state));
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, %event_id, "cannot record a superseded task; it is retried on restart");
                }
            }
            let _ = inner.updates.send(event_id);
        });
    }

    /// A task came back from a worker.
    pub(super) fn settle(&mut self, task: TaskRecord) {
        let task_key = key(&task);
        let lane_key = lane(&task);
        if !self.holds(&lane_key) {
            // The lane was lost while the task ran: the new holder has it.
            self.slots.remove(&task_key);
            if let Some(lane) = self.lanes.get_mut(&lane_key) {
                lane.remove(&(order(&task), task_key));
                if lane.is_empty() {
                    self.lanes.remove(&lane_key);
                }
            }
            return;
        }
        if task.state.is_terminal() {
            if self.held.is_some() {
                self.finished_recently.insert(task_key.clone(), now_ms());
            }
            self.slots.remove(&task_key);
            if let Some(lane) = self.lanes.get_mut(&lane_key) {
                lane.remove(&(order(&task), task_key));
                if lane.is_empty() {
                    self.lanes.remove(&lane_key);
                }
            }
        } else if let Some(slot) = self.slots.get_mut(&task_key) {
            slot.record = task;
            slot.status = SlotStatus::Waiting;
        }
        self.dirty.insert(lane_key);
    }

    pub(super) fn evaluate(&mut self, lane_key: &LaneKey, now: i64) {
        let Some(lane) = self.lanes.get(lane_key) else { return };
        if lane.is_empty() {
            self.lanes.remove(lane_key);
            return;
        }
        let entries: Vec<(Order, TaskKey)> = lane.iter().cloned().collect();
        if entries.iter().any(|(_, k)| self.slots.get(k).is_some_and(|s| s.status == SlotStatus::InFlight)) {
            return;
        }
        let due: Vec<&(Order, TaskKey)> = entries.iter().filter(|((effective, _), _)| *effective <= now).collect();
        let Some(((_, _), latest)) = due.last().map(|e| (*e).clone()) else {
            if let Some(((effective, _), _)) = entries.first() {
                self.timers.push(Reverse((*effective, lane_key.clone())));
            }
            return;
        };
        for (_, earlier) in due.iter().take(due.len() - 1) {
            self.remove_and_supersede(earlier, "superseded by a later-effective event for the same person and target");
        }
        let Some(slot) = self.slots.get_mut(&latest) else { return };
        if slot.record.state == TaskState::AwaitingApproval || slot.status != SlotStatus::Waiting {
            return;
        }
        if let Some(at) = slot.record.next_attempt_at
            && at > now
        {
            self.timers.push(Reverse((at, lane_key.clone())));
            return;
        }
        slot.status = SlotStatus::Queued;
        self.ready.entry(slot.record.target_id.clone()).or_default().push(ReadyItem {
            urgent: slot.record.urgent,
            order: Reverse(order(&slot.record)),
            key: latest,
        });
    }

    pub(super) fn dispatch(&mut self, now: i64) {
        let targets: Vec<String> = self.ready.keys().cloned().collect();
        for target in targets {
            let Some(runtime) = self.inner.targets.get(&target).cloned() else {
                // A task for a target no longer in the policy: it cannot run.
                let stranded: Vec<TaskKey> =
                    self.ready.remove(&target).map(|h| h.into_iter().map(|i| i.key).collect()).unwrap_or_default();
                for task_key in stranded {
                    if let Some(slot) = self.slots.get_mut(&task_key) {
                        slot.status = SlotStatus::InFlight;
                        let mut task = slot.record.clone();
                        task.state = TaskState::Failed;
                        task.last_error = format!("target {target:?} is not in the policy in force");
                        task.finished_at = Some(now);
                        self.in_flight.entry(target.clone()).and_modify(|c| *c += 1).or_insert(1);
                        tokio::spawn(persist_and_report(self.inner.clone(), task, "task.failed"));
                    }
                }
                continue;
            };
            if self.breakers.get(&target).is_some_and(|b| b.open_until > now) {
                continue;
            }
            loop {
                let running = self.in_flight.get(&target).copied().unwrap_or(0);
                if running >= runtime.concurrency {
                    break;
                }
                // Urgent items sort first: once the first is ordinary, none
                // behind it is urgent, and ordinary work leaves the headroom.
                let Some(first) = self.ready.get(&target).and_then(BinaryHeap::peek) else { break };
                if !first.urgent && running + runtime.urgent_headroom >= runtime.concurrency {
                    break;
                }
                let Some(item) = self.ready.get_mut(&target).and_then(BinaryHeap::pop) else { break };
                let Some(slot) = self.slots.get_mut(&item.key) else { continue };
                if slot.status != SlotStatus::Queued {
                    continue;
                }
                slot.status = SlotStatus::InFlight;
                let lane_key = lane(&slot.record);
                let mark = order(&slot.record);
                let entry = self.watermarks.entry(lane_key).or_insert(mark);
                if mark > *entry {
                    *entry = mark;
                }
                self.in_flight.insert(target.clone(), running + 1);
                tokio::spawn(run_task(self.inner.clone(), runtime.clone(), slot.record.clone()));
            }
        }
        self.ready.retain(|_, heap| !heap.is_empty());
    }

    pub(super) fn sweep_deadlines(&mut self, now: i64) {
        for slot in self.slots.values_mut() {
            // An in-flight task is settled by its worker, whose copy would
            // overwrite this flag; the worker records a breach it finishes past.
            if slot.status == SlotStatus::InFlight {
                continue;
            }
            let task = &mut slot.record;
            if task.deadline_breached || task.deadline_at >= now {
                continue;
            }
            task.deadline_breached = true;
            CoordinatorMetrics::get().deadline_breached(task);
            let inner = self.inner.clone();
            let (event_id, target_id) = (task.event_id.clone(), task.target_id.clone());
            let mut payload = json!({
                "target_id": target_id,
                "state": task.state.as_str(),
                "deadline_at": format_time(Some(task.deadline_at)),
            });
            if task.state == TaskState::AwaitingFulfilment {
                // Nobody fulfilled the ticket in time: escalated to the
                // owners answering for the access (manual.rs).
                CoordinatorMetrics::get().fulfilment_escalated(task);
                payload["escalated_to"] = json!(manual::escalation_owners(&inner.policy, task));
                payload["last_error"] = json!(task.last_error);
                tracing::warn!(%event_id, %target_id, "manual fulfilment overdue: escalated");
            }
            let audit = AuditEntry {
                at: now,
                principal: "coordinator".into(),
                event_id: event_id.clone(),
                action: "task.deadline_breached".into(),
                payload,
            };
            tracing::warn!(%event_id, %target_id, "propagation deadline breached");
            tokio::spawn(async move {
                if let Err(error) = inner.store.mark_breached(event_id.clone(), target_id, audit).await {
                    tracing::error!(%error, "cannot record a deadline breach");
                }
                let _ = inner.updates.send(event_id);
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Lane leases (replicas)

/// How often a replica's lease loop runs: claims, renewals, store polls.
pub(super) const LEASE_TICK: Duration = Duration::from_millis(200);

/// How often a replica reads the stored states of its lanes' tasks (tasks
/// another replica accepted into them, approvals decided elsewhere).
pub(super) const HELD_POLL_MS: i64 = 1000;

/// A replica's lease loop: renews its leases (and drops the lanes it lost),
/// claims the lanes of tasks it accepted and, while its backlog is short,
/// free or expired lanes (a dead replica's), and loads what the store holds
/// for its lanes that it does not know. Ends with the scheduler.
pub(super) async fn run_leases(inner: Arc<Inner>, leases: LaneLeases) {
    let renew_every = i64::try_from((leases.lease() / 5).as_millis()).unwrap_or(2000).max(100);
    // Enough queued work to keep every target's workers busy a few rounds.
    let backlog_limit: usize = inner.targets.values().map(|t| t.concurrency).sum::<usize>().max(1) * 16;
    let (mut last_renew, mut last_poll) = (0i64, 0i64);
    let mut ticker = tokio::time::interval(LEASE_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        let renew = now - last_renew >= renew_every;
        let (reply, view) = oneshot::channel();
        if inner.scheduler.send(SchedulerMessage::Poll { renew, reply }).is_err() {
            return;
        }
        let Ok(view) = view.await else { return };
        if renew {
            match leases.renew(&view.working_lanes, now).await {
                Ok(kept) => {
                    last_renew = now;
                    let kept: HashSet<LaneKey> = kept.into_iter().collect();
                    let lost: Vec<LaneKey> =
                        view.working_lanes.into_iter().filter(|lane_key| !kept.contains(lane_key)).collect();
                    if !lost.is_empty() {
                        tracing::warn!(lanes = lost.len(), "lane leases lost");
                        let _ = inner.scheduler.send(SchedulerMessage::Lost { lanes: lost, as_of: now });
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot renew lane leases"),
            }
        }
        let mut claimed = match leases.claim_lanes(&view.pending_claims, now).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "cannot claim the lanes of accepted events");
                Vec::new()
            }
        };
        let room = backlog_limit.saturating_sub(view.backlog + claimed.len());
        if room > 0 {
            match leases.claim_free(now, u32::try_from(room).unwrap_or(u32::MAX)).await {
                Ok(free) => claimed.extend(free),
                Err(error) => tracing::warn!(%error, "cannot claim free lanes"),
            }
        }
        // Lanes asked for and not obtained are held by another replica,
        // which learns of their tasks from the store.
        let mut settled: Vec<LaneKey> = claimed.clone();
        settled.extend(view.pending_claims.iter().filter(|lane_key| !claimed.contains(lane_key)).cloned());
        let state = match leases.lane_state(&claimed).await {
            Ok(state) => state,
            Err(error) => {
                // Claimed but not loaded: forget them; they are claimed again
                // (as this replica's) once the store answers.
                tracing::warn!(%error, "cannot load claimed lanes");
                claimed.clear();
                LaneState::default()
            }
        };
        if !settled.is_empty() || !claimed.is_empty() {
            let mut lanes = claimed;
            // Lanes not obtained only leave the pending list.
            let not_obtained: Vec<LaneKey> = settled.into_iter().filter(|l| !lanes.contains(l)).collect();
            let _ = inner.scheduler.send(SchedulerMessage::Unclaimed(not_obtained));
            lanes.dedup();
            let _ = inner.scheduler.send(SchedulerMessage::Claimed { lanes, state, at: now_ms() });
        }
        if now - last_poll >= HELD_POLL_MS {
            last_poll = now;
            let stored = match leases.held_task_states(now).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the held lanes' tasks");
                    continue;
                }
            };
            let (reply, wanted) = oneshot::channel();
            if inner.scheduler.send(SchedulerMessage::Unknown { stored, reply }).is_err() {
                return;
            }
            let Ok(wanted) = wanted.await else { return };
            if wanted.is_empty() {
                continue;
            }
            match leases.tasks(&wanted).await {
                Ok(tasks) => {
                    let _ = inner.scheduler.send(SchedulerMessage::Loaded(tasks));
                }
                Err(error) => tracing::warn!(%error, "cannot load the held lanes' tasks"),
            }
        }
    }
}

pub(super) async fn persist_and_report(inner: Arc<Inner>, task: TaskRecord, action: &'static str) {
    let audit = AuditEntry {
        at: now_ms(),
        principal: "coordinator".into(),
        event_id: task.event_id.clone(),
        action: action.into(),
        payload: json!({ "target_id": task.target_id, "error": task.last_error }),
    };
    match inner.save_task(task.clone(), vec![audit]).await {
        Ok(Some(state)) => {
            let _ = inner.finished.send((task.event_id.clone(), state));
        }
        Ok(None) => {}
        Err(error) => tracing::error!(%error, "cannot record a task"),
    }
    let _ = inner.updates.send(task.event_id.clone());
    let _ = inner.scheduler.send(SchedulerMessage::Finished(Box::new(task), Outcome::Done));
}

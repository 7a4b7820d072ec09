//! Several namespaces' watches merged into one stream that reads like a single watch, so one
//! reflector store (or index) can hold them all.
//!
//! A watch announces a (re)list with `Init`, its objects with `InitApply` and its end with
//! `InitDone`, on which a store replaces its whole content. Merged naively, each namespace's list
//! replaces the others' and the store ends up holding one namespace. Here the store sees one
//! initial list that ends when every namespace has listed, then live events; a later relist of
//! one namespace (after its watch expired) updates that namespace and prunes what vanished from
//! it, and leaves the others alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::{Stream, StreamExt, stream::BoxStream};
use kube::{Resource, ResourceExt, runtime::watcher::Event};

/// What the merge asks of a store to prune a relisted namespace: the objects it now holds there.
pub type Known<K> = Arc<dyn Fn(&str) -> Vec<K> + Send + Sync>;

/// The decision part of the merge: events of namespace `i` in, steps for the store out.
#[derive(Debug)]
pub struct Merge<K> {
    namespaces: Vec<String>,
    /// Whether each namespace has started (`Init`) and finished (`InitDone`) a list.
    started: Vec<bool>,
    listed: Vec<bool>,
    initial_sent: bool,
    initial_done: bool,
    /// Names listed so far by a namespace that is listing again, to prune the rest at its end.
    relisting: HashMap<usize, HashSet<String>>,
    /// Deletes seen before the merged initial list ended: a store buffering a list applies a
    /// delete to the content the list then replaces, so they are held until it has ended.
    held_deletes: HashMap<(usize, String), K>,
}

#[derive(Debug)]
pub enum Step<K> {
    Emit(Event<K>),
    /// Delete every object the store holds in this namespace whose name is not kept.
    Prune {
        namespace: String,
        keep: HashSet<String>,
    },
}

impl<K: Resource> Merge<K> {
    pub fn new(namespaces: Vec<String>) -> Self {
        let n = namespaces.len();
        Self {
            namespaces,
            started: vec![false; n],
            listed: vec![false; n],
            initial_sent: false,
            initial_done: false,
            relisting: HashMap::new(),
            held_deletes: HashMap::new(),
        }
    }

    pub fn on(&mut self, i: usize, event: Event<K>) -> Vec<Step<K>> {
        if self.initial_done {
            self.live(i, event)
        } else {
            self.initial(i, event)
        }
    }

    fn initial(&mut self, i: usize, event: Event<K>) -> Vec<Step<K>> {
        match event {
            Event::Init => {
                if self.started[i] {
                    // Listing again before every namespace finished its first list: what it
                    // listed before may be gone, so it is pruned once the merged list is in.
                    self.relisting.insert(i, HashSet::new());
                }
                self.started[i] = true;
                self.listed[i] = false;
                if self.initial_sent {
                    return vec![];
                }
                self.initial_sent = true;
                vec![Step::Emit(Event::Init)]
            }
            // A namespace already listed reports live changes; the store is still buffering, so
            // they join the buffer.
            Event::InitApply(obj) | Event::Apply(obj) => {
                let name = obj.name_any();
                if let Some(seen) = self.relisting.get_mut(&i) {
                    seen.insert(name.clone());
                }
                self.held_deletes.remove(&(i, name));
                vec![Step::Emit(Event::InitApply(obj))]
            }
            Event::Delete(obj) => {
                self.held_deletes.insert((i, obj.name_any()), obj);
                vec![]
            }
            Event::InitDone => {
                self.listed[i] = true;
                if !self.listed.iter().all(|l| *l) {
                    return vec![];
                }
                self.initial_done = true;
                let mut steps = vec![Step::Emit(Event::InitDone)];
                let mut held: Vec<_> = self.held_deletes.drain().collect();
                held.sort_by(|a, b| a.0.cmp(&b.0));
                steps.extend(
                    held.into_iter()
                        .map(|(_, obj)| Step::Emit(Event::Delete(obj))),
                );
                let mut relisted: Vec<_> = self.relisting.drain().collect();
                relisted.sort_by_key(|(i, _)| *i);
                steps.extend(relisted.into_iter().map(|(i, keep)| Step::Prune {
                    namespace: self.namespaces[i].clone(),
                    keep,
                }));
                steps
            }
        }
    }

    fn live(&mut self, i: usize, event: Event<K>) -> Vec<Step<K>> {
        match event {
            Event::Init => {
                self.relisting.insert(i, HashSet::new());
                vec![]
            }
            Event::InitApply(obj) => {
                self.relisting.entry(i).or_default().insert(obj.name_any());
                vec![Step::Emit(Event::Apply(obj))]
            }
            Event::InitDone => match self.relisting.remove(&i) {
                Some(keep) => vec![Step::Prune {
                    namespace: self.namespaces[i].clone(),
                    keep,
                }],
                None => vec![],
            },
            live => vec![Step::Emit(live)],
        }
    }
}

/// Merge per-namespace watch streams (in the order of `namespaces`) into one. `known` lists what
/// the downstream store holds in a namespace; it is asked only after every event emitted before
/// has been applied, which holds for a store fed by this stream.
pub fn merge<K, E>(
    namespaces: Vec<String>,
    streams: Vec<BoxStream<'static, Result<Event<K>, E>>>,
    known: Known<K>,
) -> impl Stream<Item = Result<Event<K>, E>> + Send + 'static
where
    K: Resource + Send + 'static,
    E: Send + 'static,
{
    let tagged = futures::stream::select_all(
        streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.map(move |item| (i, item)).boxed()),
    );
    let state = (tagged, Merge::new(namespaces), VecDeque::<Step<K>>::new());
    futures::stream::unfold(state, move |(mut tagged, mut merge, mut queue)| {
        let known = known.clone();
        async move {
            loop {
                match queue.pop_front() {
                    Some(Step::Emit(event)) => return Some((Ok(event), (tagged, merge, queue))),
                    Some(Step::Prune { namespace, keep }) => {
                        let gone = known(&namespace)
                            .into_iter()
                            .filter(|obj| !keep.contains(&obj.name_any()))
                            .map(|obj| Step::Emit(Event::Delete(obj)));
                        for (at, step) in gone.enumerate() {
                            queue.insert(at, step);
                        }
                    }
                    None => match tagged.next().await? {
                        (_, Err(error)) => return Some((Err(error), (tagged, merge, queue))),
                        (i, Ok(event)) => queue.extend(merge.on(i, event)),
                    },
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn obj(ns: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(steps: &[Step<ConfigMap>]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Emit(Event::Init) => "Init".to_string(),
                Step::Emit(Event::InitDone) => "InitDone".to_string(),
                Step::Emit(Event::InitApply(o)) => format!("InitApply {}", o.name_any()),
                Step::Emit(Event::Apply(o)) => format!("Apply {}", o.name_any()),
                Step::Emit(Event::Delete(o)) => format!("Delete {}", o.name_any()),
                Step::Prune { namespace, keep } => {
                    let mut keep: Vec<_> = keep.iter().cloned().collect();
                    keep.sort();
                    format!("Prune {namespace} keep {keep:?}")
                }
            })
            .collect()
    }

    /// Feed events (namespace index, event) and collect every step.
    fn run(merge: &mut Merge<ConfigMap>, events: Vec<(usize, Event<ConfigMap>)>) -> Vec<String> {
        let steps: Vec<_> = events
            .into_iter()
            .flat_map(|(i, e)| merge.on(i, e))
            .collect();
        names(&steps)
    }

    #[test]
    fn one_initial_list_ends_when_every_namespace_has_listed() {
        let mut merge = Merge::new(vec!["a".into(), "b".into(), "c".into()]);
        let steps = run(
            &mut merge,
            vec![
                (0, Event::Init),
                (1, Event::Init),
                (0, Event::InitApply(obj("a", "x"))),
                (1, Event::InitApply(obj("b", "y"))),
                (0, Event::InitDone),
                (2, Event::Init),
                (1, Event::InitDone),
                (2, Event::InitApply(obj("c", "z"))),
                (2, Event::InitDone),
            ],
        );
        assert_eq!(
            steps,
            [
                "Init",
                "InitApply x",
                "InitApply y",
                "InitApply z",
                "InitDone"
            ]
        );
    }

    #[test]
    fn live_changes_of_a_listed_namespace_join_the_buffered_list() {
        let mut merge = Merge::new(vec!["a".into(), "b".into()]);
        let steps = run(
            &mut merge,
            vec![
                (0, Event::Init),
                (0, Event::InitApply(obj("a", "gone"))),
                (0, Event::InitApply(obj("a", "back"))),
                (0, Event::InitDone),
                (0, Event::Apply(obj("a", "new"))),
                (0, Event::Delete(obj("a", "gone"))),
                (0, Event::Delete(obj("a", "back"))),
                (0, Event::Apply(obj("a", "back"))),
                (1, Event::Init),
                (1, Event::InitDone),
                (0, Event::Apply(obj("a", "later"))),
            ],
        );
        assert_eq!(
            steps,
            [
                "Init",
                "InitApply gone",
                "InitApply back",
                "InitApply new",
                "InitApply back",
                "InitDone",
                "Delete gone",
                "Apply later"
            ],
            "a delete waits for the end of the list; one undone by a recreate is dropped"
        );
    }

    #[test]
    fn a_relist_of_one_namespace_updates_and_prunes_that_namespace_only() {
        let mut merge = Merge::new(vec!["a".into(), "b".into()]);
        run(
            &mut merge,
            vec![
                (0, Event::Init),
                (1, Event::Init),
                (0, Event::InitDone),
                (1, Event::InitDone),
            ],
        );
        let steps = run(
            &mut merge,
            vec![
                (1, Event::Init),
                (1, Event::InitApply(obj("b", "kept"))),
                (0, Event::Apply(obj("a", "other"))),
                (1, Event::InitDone),
            ],
        );
        assert_eq!(
            steps,
            ["Apply kept", "Apply other", "Prune b keep [\"kept\"]"]
        );
    }

    #[test]
    fn a_relist_before_the_initial_list_ends_is_pruned_after_it() {
        let mut merge = Merge::new(vec!["a".into(), "b".into()]);
        let steps = run(
            &mut merge,
            vec![
                (0, Event::Init),
                (0, Event::InitApply(obj("a", "stale"))),
                (0, Event::Init),
                (0, Event::InitApply(obj("a", "fresh"))),
                (0, Event::InitDone),
                (1, Event::Init),
                (1, Event::InitDone),
            ],
        );
        assert_eq!(
            steps,
            [
                "Init",
                "InitApply stale",
                "InitApply fresh",
                "InitDone",
                "Prune a keep [\"fresh\"]"
            ]
        );
    }

    #[tokio::test]
    async fn a_store_fed_by_the_merge_holds_every_namespace_and_loses_pruned_objects() {
        use kube::runtime::{WatchStreamExt, reflector};
        let (reader, writer) = reflector::store::<ConfigMap>();
        let known: Known<ConfigMap> = {
            let reader = reader.clone();
            Arc::new(move |ns: &str| {
                reader
                    .state()
                    .iter()
                    .filter(|o| o.namespace().as_deref() == Some(ns))
                    .map(|o| (**o).clone())
                    .collect()
            })
        };
        let list = |ns: &'static str, names: &[&'static str], relist: &[&'static str]| {
            let mut events = vec![Event::Init];
            events.extend(names.iter().map(|n| Event::InitApply(obj(ns, n))));
            events.push(Event::InitDone);
            if !relist.is_empty() {
                events.push(Event::Init);
                events.extend(relist.iter().map(|n| Event::InitApply(obj(ns, n))));
                events.push(Event::InitDone);
            }
            futures::stream::iter(
                events
                    .into_iter()
                    .map(Ok::<_, kube::runtime::watcher::Error>),
            )
            .boxed()
        };
        let merged = merge(
            vec!["a".into(), "b".into(), "c".into()],
            vec![
                list("a", &["a1", "a2"], &[]),
                list("b", &["b1"], &[]),
                // c lists x and y, then relists with y only: x must go.
                list("c", &["x", "y"], &["y"]),
            ],
            known,
        );
        merged.reflect(writer).for_each(|_| async {}).await;
        let mut held: Vec<_> = reader
            .state()
            .iter()
            .map(|o| format!("{}/{}", o.namespace().unwrap(), o.name_any()))
            .collect();
        held.sort();
        assert_eq!(held, ["a/a1", "a/a2", "b/b1", "c/y"]);
    }
}

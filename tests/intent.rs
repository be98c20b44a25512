//! Writes keep every device's intent: whole-value writes (`set`, `put`, `update`,
//! `put_from`) of one list by several devices, each touching different elements, merge into
//! a list that holds every device's inserts, edits and moves, none of its deletes, and each
//! device's own order — not merely a list every device agrees on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crdtdir::{PatchOp, Store, Text};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::common::{merged, op_files, replica, Device};

/// One record of a list of records: matched by `id`, its title collaborative text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Todo {
    id: String,
    title: Text,
    done: bool,
}

/// What a device does to one element of the common base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    Delete,
    Edit,
    /// Moves it to just after the untouched element with this index in the base (or to the
    /// front), if that is a move past at least two untouched elements.
    Move(Option<usize>),
}

/// How a device writes its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `PatchOp::set` of the whole list, as JSON (strings: text).
    Set,
    /// `Store::put` of the typed list.
    Put,
    /// `Store::update` of the typed list, after some other devices' writes arrived.
    Update,
    /// `Store::put_from` from the base it read, after some other devices' writes arrived.
    PutFrom,
}

/// A new element's name, and the untouched base element it goes after (or the front).
type Insert = (String, Option<usize>);

#[derive(Debug, Clone)]
struct Plan {
    /// A list of records (`Todo`), or of plain strings.
    records: bool,
    /// The base's element names (unique).
    base: Vec<String>,
    /// Per base element: which device touches it, and how (at most one device each).
    touches: Vec<Option<(usize, Touch)>>,
    /// Per device: its method, and its inserts (name, after the untouched base element with
    /// this index, or at the front).
    devices: Vec<(Method, Vec<Insert>)>,
    /// Per device: which earlier writers' op files it has before it writes (`Update`,
    /// `PutFrom`), as a bit mask.
    early: Vec<u64>,
    /// The order in which devices deliver their files at the end, and a seed for it.
    seed: u64,
}

fn name() -> impl Strategy<Value = String> {
    // Twelve random letters: two names share little text, so an edit (a suffix) is always
    // more like its own element than like any other.
    "[a-z]{12}"
}

fn plan() -> impl Strategy<Value = Plan> {
    (2usize..=4, 3usize..=9, any::<bool>()).prop_flat_map(|(devices, n, records)| {
        (
            proptest::collection::btree_set(name(), n + 2 * devices)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
            proptest::collection::vec(
                proptest::option::weighted(
                    0.6,
                    (
                        0..devices,
                        prop_oneof![
                            Just(Touch::Delete),
                            Just(Touch::Edit),
                            proptest::option::of(0..n).prop_map(Touch::Move),
                        ],
                    ),
                ),
                n,
            ),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just(Method::Set),
                        Just(Method::Put),
                        Just(Method::Update),
                        Just(Method::PutFrom)
                    ],
                    proptest::collection::vec(proptest::option::of(0..n), 0..=2),
                ),
                devices,
            ),
            proptest::collection::vec(any::<u64>(), devices),
            any::<u64>(),
            Just(records),
            Just(n),
        )
            .prop_map(|(names, touches, devs, early, seed, records, n)| {
                let (base, fresh) = names.split_at(n);
                let mut fresh = fresh.iter().cloned();
                let devices = devs
                    .into_iter()
                    .map(|(method, inserts)| {
                        let inserts = inserts
                            .into_iter()
                            .map(|after| (fresh.next().unwrap(), after))
                            .collect();
                        (method, inserts)
                    })
                    .collect();
                Plan {
                    records,
                    base: base.to_vec(),
                    touches,
                    devices,
                    early,
                    seed,
                }
            })
    })
}

impl Plan {
    fn untouched(&self, i: usize) -> bool {
        self.touches[i].is_none()
    }

    /// An anchor only counts when it is an untouched base element (else: the front).
    fn anchor(&self, after: Option<usize>) -> Option<usize> {
        after.filter(|&a| self.untouched(a))
    }

    fn edited(name: &str, dev: usize) -> String {
        format!("{name} ed{dev}")
    }

    /// Device `dev`'s list of element names, from the base: what it means to write.
    fn intended(&self, dev: usize) -> Vec<String> {
        let mut list: Vec<String> = Vec::new();
        let mut moved: Vec<(String, Option<usize>)> = Vec::new();
        for (i, name) in self.base.iter().enumerate() {
            match self.touch(i, dev) {
                Some(Touch::Delete) => {}
                Some(Touch::Edit) => list.push(Self::edited(name, dev)),
                Some(Touch::Move(to)) => moved.push((name.clone(), self.anchor(to))),
                None => list.push(name.clone()),
            }
        }
        let inserts = self.devices[dev]
            .1
            .iter()
            .map(|(n, a)| (n.clone(), self.anchor(*a)));
        for (name, after) in moved.into_iter().chain(inserts) {
            let at = match after {
                None => 0,
                Some(a) => list.iter().position(|n| *n == self.base[a]).unwrap() + 1,
            };
            list.insert(at, name);
        }
        list
    }

    /// The touch of base element `i` by device `dev`. A move that passes fewer than two
    /// untouched elements is no move: whether it or its neighbour moved cannot be told from
    /// the two lists (see "Writing values" in README), so it is left out of the plan.
    fn touch(&self, i: usize, dev: usize) -> Option<Touch> {
        match self.touches[i] {
            Some((d, Touch::Move(to))) if d == dev => {
                let to = self.anchor(to);
                // Untouched elements between the old place and the new one: they stay, in
                // their order, in every device's view.
                let stays = |j: usize| self.untouched(j);
                let target = to.map_or(0, |a| a + 1);
                let passed = if target <= i {
                    (target..i).filter(|&j| stays(j)).count()
                } else {
                    (i + 1..target).filter(|&j| stays(j)).count()
                };
                (passed >= 2).then_some(Touch::Move(to))
            }
            Some((d, t)) if d == dev && !matches!(t, Touch::Move(_)) => Some(t),
            _ => None,
        }
    }

    fn value(&self, name: &str) -> Json {
        if self.records {
            json!({"id": id_of(name), "title": name, "done": name.contains(' ')})
        } else {
            json!(name)
        }
    }
}

/// The id of an element: its base name (an edit appends to the name).
fn id_of(name: &str) -> String {
    name.split(' ').next().unwrap().to_string()
}

fn todo(plan: &Plan, name: &str) -> Todo {
    serde_json::from_value(plan.value(name)).unwrap()
}

/// Applies device `dev`'s touches and inserts to `list` by identity: what `update` runs.
fn edit_in_place<T: Clone>(
    plan: &Plan,
    dev: usize,
    list: &mut Vec<T>,
    name_of: impl Fn(&T) -> String,
    make: impl Fn(&str) -> T,
) {
    let intended = plan.intended(dev);
    let find = |list: &Vec<T>, name: &str| list.iter().position(|t| id_of(&name_of(t)) == name);
    let mut placed: Vec<(T, Option<usize>)> = Vec::new();
    for (i, name) in plan.base.iter().enumerate() {
        match plan.touch(i, dev) {
            Some(Touch::Delete) => {
                if let Some(at) = find(list, name) {
                    list.remove(at);
                }
            }
            Some(Touch::Edit) => {
                if let Some(at) = find(list, name) {
                    list[at] = make(&Plan::edited(name, dev));
                }
            }
            Some(Touch::Move(to)) => {
                if let Some(at) = find(list, name) {
                    placed.push((list.remove(at), to));
                }
            }
            None => {}
        }
    }
    for (name, after) in &plan.devices[dev].1 {
        placed.push((make(name), plan.anchor(*after)));
    }
    // In the order of the intended list, each after its anchor.
    placed.sort_by_key(|(t, _)| intended.iter().position(|n| id_of(n) == id_of(&name_of(t))));
    let mut last_at: BTreeMap<Option<usize>, usize> = BTreeMap::new();
    for (t, after) in placed {
        let at = match last_at.get(&after) {
            Some(&prev) => prev + 1,
            None => match after {
                None => 0,
                Some(a) => find(list, &plan.base[a]).unwrap() + 1,
            },
        };
        list.insert(at, t);
        for v in last_at.values_mut() {
            if *v >= at {
                *v += 1;
            }
        }
        last_at.insert(after, at);
    }
}

struct World {
    _dir: tempfile::TempDir,
    devices: Vec<Device>,
    folders: Vec<PathBuf>,
}

impl World {
    fn new(n: usize, initial: &Json) -> World {
        let dir = tempfile::tempdir().unwrap();
        let devices: Vec<Device> = (0..n)
            .map(|i| Device::new(dir.path(), &format!("d{i}")))
            .collect();
        let folders: Vec<PathBuf> = (0..n).map(|i| dir.path().join(format!("f{i}"))).collect();
        Store::init(&folders[0], devices[0].options(), Some(initial)).unwrap();
        for f in &folders[1..] {
            replica(&folders[0], f);
            copy_files(&folders[0], f, &op_files(&folders[0]));
        }
        World {
            _dir: dir,
            devices,
            folders,
        }
    }
}

fn copy_files(from: &Path, to: &Path, files: &[String]) {
    for rel in files {
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(rel), &target).unwrap();
    }
}

/// A small deterministic shuffle (the plan's seed decides every delivery order).
fn shuffle<T>(items: &mut [T], seed: &mut u64) {
    for i in (1..items.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        items.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

/// Runs the plan: every device writes its list once, then every file reaches every device
/// in a random order (twice over, as duplicates). Returns every device's merged JSON.
fn run(plan: &Plan) -> Vec<String> {
    let base: Vec<Json> = plan.base.iter().map(|n| plan.value(n)).collect();
    let world = World::new(
        plan.devices.len(),
        &json!({ "list": base, "title": "shared" }),
    );
    let mut seed = plan.seed | 1;
    let mut written: Vec<(usize, Vec<String>)> = Vec::new();
    for (dev, (method, _)) in plan.devices.iter().enumerate() {
        let folder = &world.folders[dev];
        let store = world.devices[dev].open(folder);
        let intended: Vec<Json> = plan.intended(dev).iter().map(|n| plan.value(n)).collect();
        // What this device read before others' writes arrived (the base).
        let as_read = store.read().unwrap();
        let early = matches!(method, Method::Update | Method::PutFrom);
        if early {
            for (from, files) in &written {
                if plan.early[dev] >> from & 1 == 1 {
                    copy_files(&world.folders[*from], folder, files);
                }
            }
        }
        let before: BTreeSet<String> = op_files(folder).into_iter().collect();
        match (method, plan.records) {
            (Method::Set, _) => {
                store
                    .apply_patch(&[PatchOp::set("/list", Json::Array(intended))])
                    .unwrap();
            }
            (Method::Put, true) => {
                let list: Vec<Todo> = serde_json::from_value(Json::Array(intended)).unwrap();
                store.put("/list", &list).unwrap();
            }
            (Method::Put, false) => {
                let list: Vec<String> = serde_json::from_value(Json::Array(intended)).unwrap();
                store.put("/list", &list).unwrap();
            }
            (Method::Update, true) => {
                store
                    .update("/list", |list: &mut Vec<Todo>| {
                        edit_in_place(plan, dev, list, |t| t.title.to_string(), |n| todo(plan, n))
                    })
                    .unwrap();
            }
            (Method::Update, false) => {
                store
                    .update("/list", |list: &mut Vec<Text>| {
                        edit_in_place(plan, dev, list, |t| t.to_string(), |n| Text::from(n))
                    })
                    .unwrap();
            }
            (Method::PutFrom, true) => {
                let read: Vec<Todo> = as_read.get_as("/list").unwrap();
                let edited: Vec<Todo> = serde_json::from_value(Json::Array(intended)).unwrap();
                store.put_from("/list", &read, &edited).unwrap();
            }
            (Method::PutFrom, false) => {
                let read: Vec<Text> = as_read.get_as("/list").unwrap();
                let edited: Vec<Text> = serde_json::from_value(Json::Array(intended)).unwrap();
                store.put_from("/list", &read, &edited).unwrap();
            }
        }
        let mine: Vec<String> = op_files(folder)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        written.push((dev, mine));
    }
    // Every file to every device, in a random order, each twice, with merges in between.
    for to in 0..world.devices.len() {
        let mut deliveries: Vec<(usize, String)> = written
            .iter()
            .filter(|(from, _)| *from != to)
            .flat_map(|(from, files)| files.iter().map(move |f| (*from, f.clone())))
            .collect();
        let again = deliveries.clone();
        deliveries.extend(again);
        shuffle(&mut deliveries, &mut seed);
        for (k, (from, rel)) in deliveries.iter().enumerate() {
            copy_files(
                &world.folders[*from],
                &world.folders[to],
                std::slice::from_ref(rel),
            );
            if k % 2 == 0 {
                world.devices[to].open(&world.folders[to]).read().unwrap();
            }
        }
    }
    (0..world.devices.len())
        .map(|d| merged(&world.devices[d], &world.folders[d]))
        .collect()
}

/// Checks the merged list against every device's intent; `Err` says what was lost.
fn check(plan: &Plan, merged: &Json) -> Result<(), String> {
    let list = merged["list"].as_array().ok_or("no list")?;
    let names: Vec<String> = list
        .iter()
        .map(|v| {
            if plan.records {
                assert_eq!(
                    v["id"].as_str().unwrap(),
                    id_of(v["title"].as_str().unwrap())
                );
                v["title"].as_str().unwrap().to_string()
            } else {
                v.as_str().unwrap().to_string()
            }
        })
        .collect();
    for v in list {
        if let Some(n) = v.as_str().or(v["title"].as_str()) {
            if plan.value(n) != *v {
                return Err(format!("{v} is not the value of {n:?}"));
            }
        }
    }
    let ids: Vec<String> = names.iter().map(|n| id_of(n)).collect();
    let count = |id: &str| ids.iter().filter(|i| *i == id).count();
    // What every element must be: kept, edited, moved, inserted; deleted ones gone.
    for (i, name) in plan.base.iter().enumerate() {
        let toucher = plan.touches[i].map(|(d, _)| d);
        let touch = toucher.and_then(|d| plan.touch(i, d));
        let want = match touch {
            Some(Touch::Delete) => None,
            Some(Touch::Edit) => Some(Plan::edited(name, toucher.unwrap())),
            _ => Some(name.clone()),
        };
        match want {
            None if count(name) != 0 => return Err(format!("deleted {name} is back")),
            None => {}
            Some(want) => {
                if count(name) != 1 {
                    return Err(format!("{name} is there {} times", count(name)));
                }
                if !names.contains(&want) {
                    return Err(format!("{want:?} is missing (an edit lost)"));
                }
            }
        }
    }
    for (dev, (_, inserts)) in plan.devices.iter().enumerate() {
        for (name, _) in inserts {
            if count(name) != 1 {
                return Err(format!(
                    "device {dev}'s insert {name} is there {} times",
                    count(name)
                ));
            }
        }
    }
    // Each device's own order: the elements of its list that no other device moved.
    for dev in 0..plan.devices.len() {
        let moved_by_others: BTreeSet<String> = plan
            .base
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                plan.touches[*i].is_some_and(|(d, _)| {
                    d != dev && matches!(plan.touch(*i, d), Some(Touch::Move(_)))
                })
            })
            .map(|(_, n)| n.clone())
            .collect();
        let mine: Vec<String> = plan
            .intended(dev)
            .iter()
            .map(|n| id_of(n))
            .filter(|id| !moved_by_others.contains(id) && ids.contains(id))
            .collect();
        let theirs: Vec<String> = ids.iter().filter(|id| mine.contains(id)).cloned().collect();
        if mine != theirs {
            return Err(format!("device {dev}'s order {mine:?} became {theirs:?}"));
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("CRDTDIR_INTENT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// 2–4 devices each rewrite one list from a common base (by `set`, `put`, `update` or
    /// `put_from`), inserting, deleting, editing and moving different elements; the files
    /// cross in random order, twice. Every device ends byte-identical, and the list holds
    /// every device's inserts and edits, none of its deletes, and each device's own order.
    #[test]
    fn whole_value_writes_of_one_list_keep_every_devices_intent(plan in plan()) {
        let outputs = run(&plan);
        for (d, out) in outputs.iter().enumerate() {
            prop_assert_eq!(out, &outputs[0], "device {} disagrees", d);
        }
        let merged: Json = serde_json::from_str(&outputs[0]).unwrap();
        if let Err(lost) = check(&plan, &merged) {
            prop_assert!(false, "{}\nmerged: {}\nintended: {:?}", lost, merged["list"],
                (0..plan.devices.len()).map(|d| plan.intended(d)).collect::<Vec<_>>());
        }
    }
}

/// Two devices with their own folders, from `initial`; `exchange` crosses their files.
struct Pair {
    world: World,
}

impl Pair {
    fn new(initial: Json) -> Pair {
        Pair {
            world: World::new(2, &initial),
        }
    }

    fn store(&self, dev: usize) -> Store {
        self.world.devices[dev].open(&self.world.folders[dev])
    }

    /// Every op file to both folders; both devices' JSON, which must agree.
    fn exchange(&self) -> Json {
        let (a, b) = (&self.world.folders[0], &self.world.folders[1]);
        copy_files(a, b, &op_files(a));
        copy_files(b, a, &op_files(b));
        let outs: Vec<String> = (0..2)
            .map(|d| merged(&self.world.devices[d], &self.world.folders[d]))
            .collect();
        assert_eq!(outs[0], outs[1], "the devices disagree");
        serde_json::from_str(&outs[0]).unwrap()
    }
}

/// The first example, through the library: one device puts "milk" in front, the
/// other changes "cheese" to "cheddar"; both edits survive, ungarbled.
#[test]
fn a_list_rewritten_on_two_devices_keeps_an_insert_and_an_edit() {
    let t = Pair::new(json!({"items": ["apples", "bread", "cheese"]}));
    t.store(0)
        .apply_patch(&[PatchOp::set(
            "/items",
            json!(["milk", "apples", "bread", "cheese"]),
        )])
        .unwrap();
    t.store(1)
        .put("/items", &["apples", "bread", "cheddar"])
        .unwrap();
    assert_eq!(
        t.exchange()["items"],
        json!(["milk", "apples", "bread", "cheddar"])
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    theme: String,
    lang: String,
}

/// The stale form: device A reads /settings into a form; B's `lang: "de"` arrives; A changes
/// `theme` and saves. `put_from` and `update` write only A's edit and keep B's; `put` (make
/// it equal) would put the form's stale `lang` back, which is why it is not the way to save
/// a form.
#[test]
fn a_stale_form_saved_with_put_from_or_update_keeps_what_arrived() {
    for way in ["put_from", "update", "put"] {
        let t = Pair::new(json!({}));
        t.store(0)
            .put(
                "/settings",
                &Settings {
                    theme: "dark".into(),
                    lang: "en".into(),
                },
            )
            .unwrap();
        t.exchange();
        let a = t.store(0);
        let form: Settings = a.read().unwrap().get_as("/settings").unwrap();
        t.store(1)
            .apply_patch(&[PatchOp::set("/settings/lang", json!("de"))])
            .unwrap();
        t.exchange(); // B's edit arrives on A while the form is open
        let mut edited = form.clone();
        edited.theme = "light".into();
        match way {
            "put_from" => a.put_from("/settings", &form, &edited).unwrap(),
            "update" => a
                .update("/settings", |s: &mut Settings| s.theme = "light".into())
                .unwrap(),
            _ => a.put("/settings", &edited).unwrap(),
        };
        drop(a);
        let lang = if way == "put" { "en" } else { "de" };
        assert_eq!(
            t.exchange()["settings"],
            json!({"theme": "light", "lang": lang}),
            "{way}"
        );
    }
}

/// `update` leaves alone the fields its type does not know: a struct that is a view of a
/// bigger record edits only its own fields.
#[test]
fn update_leaves_fields_the_type_does_not_know() {
    #[derive(Serialize, Deserialize)]
    struct Theme {
        theme: String,
    }
    let t = Pair::new(json!({"settings": {"theme": "dark", "lang": "en", "font": 12}}));
    t.store(0)
        .update("/settings", |s: &mut Theme| s.theme = "light".into())
        .unwrap();
    assert_eq!(
        t.exchange()["settings"],
        json!({"theme": "light", "lang": "en", "font": 12})
    );
}

/// Typed strings: an id (a plain `String`) set on both devices ends as one of the two values,
/// never a mix; a `Text` field edited on both devices keeps both edits (splices merge).
#[test]
fn typed_ids_are_atomic_and_text_fields_merge_their_splices() {
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Note {
        id: String,
        body: Text,
    }
    let t = Pair::new(json!({}));
    t.store(0)
        .put(
            "/note",
            &Note {
                id: "note-0001".into(),
                body: "Buy milk".into(),
            },
        )
        .unwrap();
    t.exchange();
    t.store(0)
        .update("/note", |n: &mut Note| {
            n.id = "note-aaaa".into();
            n.body = "Buy oat milk".into();
        })
        .unwrap();
    t.store(1)
        .update("/note", |n: &mut Note| {
            n.id = "note-bbbb".into();
            n.body = "Buy milk today".into();
        })
        .unwrap();
    let note = t.exchange()["note"].clone();
    assert!(
        note["id"] == "note-aaaa" || note["id"] == "note-bbbb",
        "a mix of two ids: {note}"
    );
    assert_eq!(note["body"], "Buy oat milk today");
}

/// Nested lists of records: one device adds a task to a project, renames another task and
/// moves the last project to the front, the other ticks a task, deletes one and renames the
/// project; every edit survives (records matched by `id` at every level).
#[test]
fn nested_records_edited_on_two_devices_keep_every_edit() {
    let t = Pair::new(json!({"projects": [
        {"id": "p1", "name": "Home", "tasks": [
            {"id": "t1", "title": "dishes", "done": false},
            {"id": "t2", "title": "laundry", "done": false},
            {"id": "t3", "title": "plants", "done": false}]},
        {"id": "p2", "name": "Work", "tasks": []},
        {"id": "p3", "name": "Garden", "tasks": []},
        {"id": "p4", "name": "Car", "tasks": []}]}));
    let mut a = t.store(0).read().unwrap().get("/projects").unwrap();
    let mut b = a.clone();
    // A: a new task in front of p1's, t3 renamed; p4 moved to the front.
    let tasks = a[0]["tasks"].as_array_mut().unwrap();
    tasks.insert(0, json!({"id": "t4", "title": "groceries", "done": false}));
    tasks[3]["title"] = json!("water the plants");
    let p4 = a.as_array_mut().unwrap().remove(3);
    a.as_array_mut().unwrap().insert(0, p4);
    // B: t1 done, t2 deleted, p1 renamed.
    b[0]["tasks"][0]["done"] = json!(true);
    b[0]["tasks"].as_array_mut().unwrap().remove(1);
    b[0]["name"] = json!("House");
    t.store(0)
        .apply_patch(&[PatchOp::set("/projects", a)])
        .unwrap();
    t.store(1).put("/projects", &b).unwrap();
    let merged = t.exchange();
    let names: Vec<&str> = merged["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Car", "House", "Work", "Garden"]);
    let home = merged["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "p1")
        .unwrap();
    assert_eq!(home["name"], "House");
    assert_eq!(
        home["tasks"],
        json!([
            {"id": "t4", "title": "groceries", "done": false},
            {"id": "t1", "title": "dishes", "done": true},
            {"id": "t3", "title": "water the plants", "done": false}])
    );
}

/// Counters stay counters: a whole-value write moves a counter by the difference, so a
/// concurrent increment still adds up; another kind of value onto a counter is refused.
#[test]
fn a_set_on_a_counter_moves_it_by_the_difference() {
    let t = Pair::new(json!({}));
    t.store(0)
        .apply_patch(&[PatchOp::increment("/visits", 2)])
        .unwrap();
    t.exchange();
    t.store(0)
        .apply_patch(&[PatchOp::set("/visits", json!(5))])
        .unwrap();
    t.store(1)
        .apply_patch(&[PatchOp::increment("/visits", 1)])
        .unwrap();
    assert_eq!(t.exchange()["visits"], json!(6));
    // Still a counter: it increments.
    t.store(1)
        .apply_patch(&[PatchOp::increment("/visits", 1)])
        .unwrap();
    assert_eq!(t.exchange()["visits"], json!(7));
    let err = t
        .store(0)
        .apply_patch(&[PatchOp::set("/visits", json!("seven"))])
        .unwrap_err();
    assert!(err.to_string().contains("counter"), "{err}");
}

/// The typed layer's reads and list writes: `get_as::<Option<T>>` of a missing path is
/// `None`, missing and wrong-type are told apart, and insert/push/remove write one element.
#[test]
fn typed_reads_tell_missing_from_wrong_type_and_typed_list_writes_touch_one_element() {
    let t = Pair::new(json!({"todos": [], "n": 3}));
    let store = t.store(0);
    store
        .push("/todos", &todo(&plan_for_records(), "aaaaaaaaaaaa"))
        .unwrap();
    store
        .insert("/todos/0", &todo(&plan_for_records(), "bbbbbbbbbbbb"))
        .unwrap();
    store
        .push("/todos", &todo(&plan_for_records(), "cccccccccccc"))
        .unwrap();
    store.remove("/todos/1").unwrap();
    let view = store.read().unwrap();
    let todos: Vec<Todo> = view.get_as("/todos").unwrap();
    assert_eq!(
        todos.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["bbbbbbbbbbbb", "cccccccccccc"]
    );
    assert_eq!(view.get_as::<Option<Todo>>("/nothing").unwrap(), None);
    assert_eq!(view.get_as::<Option<Todo>>("/todos/7").unwrap(), None);
    assert_eq!(view.get_as::<Option<u32>>("/n").unwrap(), Some(3));
    assert!(matches!(
        view.get_as::<Todo>("/nothing"),
        Err(crdtdir::PatchError::Missing { .. })
    ));
    assert!(matches!(
        view.get_as::<Todo>("/n"),
        Err(crdtdir::PatchError::Type { .. })
    ));
    assert!(matches!(
        store.update("/nothing", |t: &mut Todo| t.done = true),
        Err(crdtdir::Error::Patch(crdtdir::PatchError::Missing { .. }))
    ));
    // An `Option` reads a missing value as `None` and writes it when it becomes `Some`.
    store
        .update("/maybe", |m: &mut Option<u32>| *m = Some(1))
        .unwrap();
    assert_eq!(store.read().unwrap().get("/maybe").unwrap(), json!(1));
}

fn plan_for_records() -> Plan {
    Plan {
        records: true,
        base: Vec::new(),
        touches: Vec::new(),
        devices: Vec::new(),
        early: Vec::new(),
        seed: 1,
    }
}

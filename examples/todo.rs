//! A todo app on the crdtdir library, for two devices: a guide in one file.
//!
//! ```sh
//! cargo run --example todo            # in a temporary folder, removed at the end
//! cargo run --example todo -- FOLDER  # kept: FOLDER/todo is the store
//! ```
//!
//! A laptop and a phone share one store folder (here on one disk; on real devices a sync
//! tool carries it), each with its own state directory. Both add, tick and delete todos at
//! the same time; the phone's screen follows a watcher; at the end both show the same list,
//! with every device's edits.
//!
//! What the app does, and why:
//!
//! - The list is made once, when the store is made (`Store::init` with `{"todos": []}`):
//!   two devices that each made their own list would write into two different lists.
//! - A todo is a typed value (serde): `push`, `update` and `View::get_as` write and read it.
//!   Its strings are plain `String`s, so they are atomic values: two devices renaming one
//!   todo keep one of the names, never a mix. (A `crdtdir::Text` field would be
//!   collaborative text instead, for a note two people type into.)
//! - A todo is found by its `id`, never by its index: by the time a tap is written, another
//!   device may have added or deleted todos above it. `Store::update` reads the list, lets
//!   the app edit it, and writes only the edit, under this device's write lock; lists are
//!   compared by their records' `id`, so a tick is one change of one `done` field.
//! - The phone's screen is the JSON the watcher's patches keep up to date: the app never
//!   reads the whole document again to redraw.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crdtdir::{Event, JsonPatch, Options, Store, WatchOptions, Watcher};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// How long the phone waits for the laptop's edits to reach its screen. One folder on one
/// disk takes a fraction of a second; a sync tool takes what it takes.
const WAIT: Duration = Duration::from_secs(30);

/// One todo, as it is stored at `/todos/<index>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    /// 128 random bits as hex: unique without asking any other device.
    pub id: String,
    /// What to do.
    pub title: String,
    /// Ticked.
    pub done: bool,
}

/// What the app ends with: each device's list, and what the phone's watcher reported.
#[derive(Debug)]
pub struct Summary {
    /// The list the laptop reads at the end.
    pub laptop: Vec<Todo>,
    /// The list on the phone's screen at the end (kept by its watcher).
    pub phone: Vec<Todo>,
    /// The lines the phone printed when its watcher brought other devices' edits.
    pub heard: Vec<String>,
}

fn main() -> Result<()> {
    // The first argument names the folder to use; without one, a temporary folder.
    let temporary;
    let folder = match std::env::args_os().nth(1) {
        Some(folder) => PathBuf::from(folder),
        None => {
            temporary = tempfile::tempdir()?;
            temporary.path().to_path_buf()
        }
    };
    let summary = run(&folder)?;
    println!("\nBoth devices show the same list:");
    show("laptop", &summary.laptop);
    show("phone", &summary.phone);
    println!(
        "(the phone's watcher brought other devices' edits {} time(s))",
        summary.heard.len()
    );
    Ok(())
}

/// Runs the app's story in `folder`: the store goes in `folder/todo`, each device's state
/// directory beside it (never inside the synced folder).
pub fn run(folder: &Path) -> Result<Summary> {
    std::fs::create_dir_all(folder)?;
    let store = folder.join("todo");
    let device = |name: &str| {
        Options::new()
            .state_dir(folder.join(format!("{name}-state")))
            .device(name)
    };

    // The laptop makes the store, with the empty list every device adds to. Other devices
    // never `init`: they open the folder once the sync tool has delivered it.
    let laptop = Device {
        name: "laptop",
        store: Store::init(&store, device("laptop"), Some(&json!({"todos": []})))?,
    };
    let phone = Device {
        name: "phone",
        store: Store::open(&store, device("phone"))?,
    };
    let mut screen = Screen::watch(&phone)?;

    laptop.add("Buy milk")?;
    laptop.add("Call mum")?;
    laptop.add("Water the plants")?;
    screen.follow_until(|todos| todos.len() == 3)?;
    phone.add("Book the dentist")?;
    screen.follow_until(|todos| todos.len() == 4)?;
    show("laptop", &laptop.todos()?);
    show("phone", &screen.todos()?);

    // Both users tap at once, each on the list their screen shows: the phone's taps come
    // from a list read before the laptop's edits. Whether those edits reach the phone
    // before its own writes or after (a write merges what has arrived, and a sync tool
    // takes its time) changes nothing in the list both devices end with.
    println!("\nBoth devices edit at once:");
    let on_laptop = laptop.todos()?;
    let on_phone = screen.todos()?;
    laptop.delete(titled(&on_laptop, "Call mum")?)?;
    laptop.tick(titled(&on_laptop, "Water the plants")?)?;
    laptop.add("Pay rent")?;
    // On the phone's screen "Book the dentist" is the fourth todo; since the laptop's
    // delete it is the third. Found by id, the tick lands on it.
    phone.tick(titled(&on_phone, "Book the dentist")?)?;
    // The laptop deleted this one meanwhile: a tick does not bring it back.
    phone.tick(titled(&on_phone, "Call mum")?)?;
    phone.add("Buy bread")?;

    // The phone's watcher brings the laptop's edits to its screen (and its own, marked
    // `local`), until it shows what the laptop shows.
    let laptop_list = laptop.todos()?;
    screen.follow_until(|todos| todos == laptop_list.as_slice())?;
    Ok(Summary {
        laptop: laptop_list,
        phone: screen.todos()?,
        heard: screen.heard,
    })
}

/// One device of the app: a `Store` opened with this device's own state directory.
struct Device {
    name: &'static str,
    store: Store,
}

impl Device {
    /// The list as this device reads it now (every op file in the folder, merged).
    fn todos(&self) -> Result<Vec<Todo>> {
        Ok(self.store.read()?.get_as("/todos")?)
    }

    fn add(&self, title: &str) -> Result<()> {
        let todo = Todo {
            id: new_id()?,
            title: title.into(),
            done: false,
        };
        // One change, in the folder as an op file before `push` returns.
        self.store.push("/todos", &todo)?;
        println!("{}: added \"{title}\"", self.name);
        Ok(())
    }

    /// Ticks the todo the user tapped, wherever it is in the list now.
    fn tick(&self, tapped: &Todo) -> Result<()> {
        let ticked = self
            .store
            .update("/todos", |todos: &mut Vec<Todo>| {
                let todo = todos.iter_mut().find(|t| t.id == tapped.id)?;
                todo.done = true;
                Some(())
            })?
            .value;
        match ticked {
            Some(()) => println!("{}: ticked \"{}\"", self.name, tapped.title),
            // Nothing changed, so nothing was written.
            None => println!(
                "{}: \"{}\" was deleted on another device",
                self.name, tapped.title
            ),
        }
        Ok(())
    }

    fn delete(&self, tapped: &Todo) -> Result<()> {
        self.store.update("/todos", |todos: &mut Vec<Todo>| {
            todos.retain(|t| t.id != tapped.id)
        })?;
        println!("{}: deleted \"{}\"", self.name, tapped.title);
        Ok(())
    }
}

/// A device's screen: the document as JSON, kept current by applying its watcher's patches.
struct Screen {
    watcher: Watcher,
    document: Json,
    heard: Vec<String>,
}

impl Screen {
    fn watch(device: &Device) -> Result<Screen> {
        let watcher = device.store.watch(WatchOptions::new())?;
        // The first event carries the whole document; later ones carry patches onto it.
        let first = watcher
            .recv_timeout(WAIT)
            .ok_or("the watcher sent no first event")?;
        let document = first.document.ok_or("the first event has no document")?;
        Ok(Screen {
            watcher,
            document,
            heard: Vec::new(),
        })
    }

    fn todos(&self) -> Result<Vec<Todo>> {
        Ok(serde_json::from_value(self.document["todos"].clone())?)
    }

    /// Applies the watcher's events until `done` holds for the list on screen, printing what
    /// other devices changed; an error if that takes longer than [`WAIT`].
    fn follow_until(&mut self, done: impl Fn(&[Todo]) -> bool) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        while !done(&self.todos()?) {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .watcher
                .recv_timeout(left)
                .ok_or("the other device's edits did not arrive in time")?;
            let before = self.todos()?;
            self.apply(&event)?;
            // This device's own writes come back too, marked `local`: the app drew them
            // already. A batch may hold both.
            let what = describe(&before, &self.todos()?);
            if event.changes.iter().any(|c| !c.local) && !what.is_empty() {
                let line = format!("phone's watcher: {what} (from {})", devices(&event));
                println!("{line}");
                self.heard.push(line);
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: &Event) -> Result<()> {
        if event.reset {
            // The document was rebuilt (a fork was resolved): the patches start from `{}`.
            self.document = json!({});
        }
        JsonPatch::apply_all(&event.patches, &mut self.document)?;
        Ok(())
    }
}

/// The names of the devices whose changes an event brought.
fn devices(event: &Event) -> String {
    let mut names: Vec<&str> = event.changes.iter().map(|c| c.device.as_str()).collect();
    names.sort();
    names.dedup();
    names.join(", ")
}

/// What changed between two lists, todo by todo (matched by id).
fn describe(before: &[Todo], after: &[Todo]) -> String {
    let mut said = Vec::new();
    for todo in after {
        match before.iter().find(|t| t.id == todo.id) {
            None => said.push(format!("added \"{}\"", todo.title)),
            Some(was) if was.done != todo.done => {
                let verb = if todo.done { "ticked" } else { "unticked" };
                said.push(format!("{verb} \"{}\"", todo.title));
            }
            Some(_) => {}
        }
    }
    for todo in before {
        if !after.iter().any(|t| t.id == todo.id) {
            said.push(format!("deleted \"{}\"", todo.title));
        }
    }
    said.join(", ")
}

fn show(device: &str, todos: &[Todo]) {
    println!("{device}'s list:");
    for todo in todos {
        let mark = if todo.done { "x" } else { " " };
        println!("  [{mark}] {}", todo.title);
    }
}

fn titled<'a>(todos: &'a [Todo], title: &str) -> Result<&'a Todo> {
    Ok(todos
        .iter()
        .find(|t| t.title == title)
        .ok_or_else(|| format!("no todo \"{title}\""))?)
}

/// A random id (a real app might use the `uuid` crate; `getrandom` is already in crdtdir's
/// tree).
fn new_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

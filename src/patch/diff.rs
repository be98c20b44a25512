//! Whole-value writes as the smallest change that keeps every device's intent.
//!
//! `set` and `add`/`replace` onto existing values, [`crate::Store::put`],
//! [`crate::Store::update`] and [`crate::Store::put_from`] all come here. A write carries the
//! value it changes from (the *base*) and the value it changes to; what is written is the
//! difference between the two, applied to the document as it is now. A two-way write ("make
//! it equal", `set`, `put`) is the three-way write whose base is the value as it is now.
//!
//! | what is there now | base → new         | what is written                                            |
//! |-------------------|--------------------|------------------------------------------------------------|
//! | map               | objects            | keys the edit removed are deleted, keys it changed are written (recursively), every other key is untouched |
//! | list              | arrays             | a diff by longest common subsequence (elements matched by their `id` key, else by value): an insert stays an insert, a delete a delete, a changed element is edited in place (recursively), a moved element is a delete and an insert; every other element is untouched |
//! | text              | strings (as text)  | splices of the characters that changed                     |
//! | counter           | whole numbers      | an increment by the difference                             |
//! | anything else     | any                | the new value, as a new value (a put over the old one)     |
//!
//! Nothing is written where the base and the new value are equal, so what other devices did
//! there survives. Where what is there now has moved on from the base (another device's
//! edits arrived since the base was read), the edit is applied to it: list positions are
//! found again by the same matching, and an element another device deleted stays deleted.
//!
//! Strings: a new string is collaborative text or an atomic scalar as [`Strings`] says; a
//! [`super::typed::Text`] value is always text. An existing text stays text when the write
//! allows text, and an existing scalar string stays scalar when the write does not ask for a
//! kind ([`Strings::Auto`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::Range;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, Prop, ReadDoc, ScalarValue, ROOT};
use serde_json::{Map, Value as Json};

use super::typed::text_mark;
use super::{json_equal, json_scalar, sorted, Existing, PatchError};
use crate::render;

/// The kind a written string takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strings {
    /// New strings are text; an existing string keeps its kind (a text is spliced, a scalar
    /// string replaced). What a JSON patch without `scalar` does.
    Auto,
    /// Every string the write changes is text (`"scalar": false`).
    Text,
    /// Every string the write changes is an atomic scalar (`"scalar": true`, and plain
    /// strings of typed values), except [`super::typed::Text`] values.
    Scalar,
}

/// How a whole-value write reads its value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style<'a> {
    pub(crate) strings: Strings,
    /// List elements that are objects with this key are matched by its value.
    pub(crate) key: Option<&'a str>,
}

/// Where a value lives: the document's root map, or a prop of a map or list.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Root,
    At(ObjId, Prop),
}

/// How long a list diff may look for the longest common subsequence before it settles for
/// a longer (still correct) edit script.
const DIFF_DEADLINE: Duration = Duration::from_secs(2);

/// Writes `new` at `slot`: the edit from `base` to `new`, applied to the value there now.
/// With no `base`, the value there now is the base: the write makes it equal to `new`.
pub(crate) fn write<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    slot: &Slot,
    base: Option<&Json>,
    new: &Json,
    style: Style<'_>,
) -> Result<(), PatchError> {
    if matches!(slot, Slot::Root) && !matches!(shape(new), Shape::Map(_)) {
        return Err(PatchError::Path {
            path: path.into(),
            reason: "the document root must be an object".into(),
        });
    }
    match base {
        Some(base) => merge(tx, path, slot, base, new, style, false),
        None => match existing(tx, slot)? {
            None => put_new(tx, slot, new, style, None),
            Some(now) => {
                let base = render_existing(tx, &now);
                merge(tx, path, slot, &base, new, style, true)
            }
        },
    }
}

/// Writes `value` as new: inserted into a list at `prop`, or put over whatever is there.
pub(crate) fn create<T: Transactable + ReadDoc>(
    tx: &mut T,
    parent: &ObjId,
    prop: Prop,
    insert: bool,
    value: &Json,
    style: Style<'_>,
) -> Result<(), PatchError> {
    let make = |tx: &mut T, kind: ObjType| -> Result<ObjId, PatchError> {
        Ok(match (&prop, insert) {
            (Prop::Seq(i), true) => tx.insert_object(parent, *i, kind)?,
            _ => tx.put_object(parent, prop.clone(), kind)?,
        })
    };
    match shape(value) {
        // A new object tree goes in as one batch: Automerge then splices its op set twice
        // for the whole tree, where one put or insert per node splices it once per node
        // (a 4 MB `init --from` took 23 s that way).
        Shape::Map(_) | Shape::List(_) => {
            let tree = hydrated(value, style);
            tx.batch_create_object(parent, prop.clone(), &tree, insert)?;
        }
        Shape::Str(s, marked) if marked || style.strings != Strings::Scalar => {
            let id = make(tx, ObjType::Text)?;
            tx.splice_text(&id, 0, 0, s)?;
        }
        Shape::Str(s, _) => put_scalar(tx, parent, &prop, insert, ScalarValue::Str(s.into()))?,
        Shape::Scalar(other) => put_scalar(tx, parent, &prop, insert, json_scalar(other))?,
    }
    Ok(())
}

/// `value` as the tree [`create`] makes of it, node for node: maps, lists, strings as text
/// or as scalars by `style` (marked text always as text), other scalars.
fn hydrated(value: &Json, style: Style<'_>) -> automerge::hydrate::Value {
    use automerge::hydrate;
    match shape(value) {
        Shape::Map(map) => hydrate::Value::from(hydrate::Map::from(
            map.iter()
                .map(|(key, v)| (key.clone(), hydrated(v, style)))
                .collect::<HashMap<String, hydrate::Value>>(),
        )),
        Shape::List(items) => {
            hydrate::Value::from(items.iter().map(|v| hydrated(v, style)).collect::<Vec<_>>())
        }
        Shape::Str(s, marked) if marked || style.strings != Strings::Scalar => {
            hydrate::Value::text(crate::doc::TEXT_ENCODING, s)
        }
        Shape::Str(s, _) => hydrate::Value::from(ScalarValue::Str(s.into())),
        Shape::Scalar(other) => hydrate::Value::from(json_scalar(other)),
    }
}

fn put_scalar<T: Transactable>(
    tx: &mut T,
    parent: &ObjId,
    prop: &Prop,
    insert: bool,
    value: ScalarValue,
) -> Result<(), PatchError> {
    match (prop, insert) {
        (Prop::Seq(i), true) => tx.insert(parent, *i, value)?,
        _ => tx.put(parent, prop.clone(), value)?,
    }
    Ok(())
}

/// The edit from `base` to `new`, applied at `slot`. `exact`: the value there now is `base`.
fn merge<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    slot: &Slot,
    base: &Json,
    new: &Json,
    style: Style<'_>,
    exact: bool,
) -> Result<(), PatchError> {
    if same(base, new) {
        return Ok(());
    }
    let now = existing(tx, slot)?;
    match (&now, shape(base), shape(new)) {
        (
            Some(Existing::Object(ObjType::Map | ObjType::Table, id)),
            Shape::Map(b),
            Shape::Map(n),
        ) => merge_map(tx, path, id, b, n, style, exact),
        (Some(Existing::Object(ObjType::List, id)), Shape::List(b), Shape::List(n)) => {
            merge_list(tx, path, id, b, n, style, exact)
        }
        (Some(Existing::Object(ObjType::Text, id)), Shape::Str(b, _), Shape::Str(n, marked))
            if marked || style.strings != Strings::Scalar =>
        {
            merge_text(tx, id, b, n, exact)
        }
        (Some(Existing::Scalar(ScalarValue::Counter(c))), _, _) => {
            let (Some(b), Some(n)) = (whole(base), whole(new)) else {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: "a counter takes a whole number (it moves by the difference); remove it first to write another kind of value".into(),
                });
            };
            let now = i64::from(c);
            let Some(by) = n.checked_sub(b).filter(|by| now.checked_add(*by).is_some()) else {
                return Err(PatchError::Path {
                    path: path.into(),
                    reason: format!("the counter would overflow ({now} + {n} - {b})"),
                });
            };
            let Slot::At(parent, prop) = slot else {
                unreachable!("the root is a map")
            };
            if by != 0 {
                tx.increment(parent, prop.clone(), by)?;
            }
            Ok(())
        }
        _ => put_new(tx, slot, new, style, now.as_ref()),
    }
}

/// Puts `new` over what is at `slot` (or where nothing is).
fn put_new<T: Transactable + ReadDoc>(
    tx: &mut T,
    slot: &Slot,
    new: &Json,
    style: Style<'_>,
    now: Option<&Existing>,
) -> Result<(), PatchError> {
    let Slot::At(parent, prop) = slot else {
        unreachable!("the root is written as a map")
    };
    // A write that names no kind keeps a scalar string scalar.
    let keep_scalar = style.strings == Strings::Auto
        && matches!(now, Some(Existing::Scalar(ScalarValue::Str(_))))
        && matches!(shape(new), Shape::Str(_, false));
    let style = if keep_scalar {
        Style {
            strings: Strings::Scalar,
            ..style
        }
    } else {
        style
    };
    create(tx, parent, prop.clone(), false, new, style)
}

#[allow(clippy::too_many_arguments)]
fn merge_map<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    map: &ObjId,
    base: &Map<String, Json>,
    new: &Map<String, Json>,
    style: Style<'_>,
    exact: bool,
) -> Result<(), PatchError> {
    for key in base.keys().filter(|k| !new.contains_key(*k)) {
        if exact || tx.get(map, key.as_str())?.is_some() {
            tx.delete(map, key.as_str())?;
        }
    }
    for (key, value) in sorted(new) {
        let slot = Slot::At(map.clone(), Prop::Map(key.clone()));
        let here = || format!("{path}/{}", super::escape_token(key));
        match base.get(key) {
            Some(was) if same(was, value) => {}
            Some(was) => merge(tx, &here(), &slot, was, value, style, exact)?,
            None => write(tx, &here(), &slot, None, value, style)?,
        }
    }
    Ok(())
}

fn merge_list<T: Transactable + ReadDoc>(
    tx: &mut T,
    path: &str,
    list: &ObjId,
    base: &[Json],
    new: &[Json],
    style: Style<'_>,
    exact: bool,
) -> Result<(), PatchError> {
    let mut ids = Identities::new(style.key);
    let base_ids: Vec<u32> = base.iter().map(|v| ids.of(v)).collect();
    let new_ids: Vec<u32> = new.iter().map(|v| ids.of(v)).collect();
    let now_of: Vec<Option<usize>> = if exact {
        (0..base.len()).map(Some).collect()
    } else {
        let now = match render::object(tx, list, ObjType::List) {
            Json::Array(items) => items,
            _ => unreachable!("a list renders as an array"),
        };
        let now_ids: Vec<u32> = now.iter().map(|v| ids.of(v)).collect();
        align(&base_ids, &now_ids, |b, n, alone| {
            ids.pairable(&base[b], &now[n], alone)
        })
    };
    let steps = plan(
        &base_ids,
        &new_ids,
        &now_of,
        |b, n, alone| ids.pairable(&base[b], &new[n], alone),
        |b, n| !same(&base[b], &new[n]),
    );
    for step in steps {
        match step {
            Step::Edit {
                at,
                base: b,
                new: n,
            } => {
                let slot = Slot::At(list.clone(), Prop::Seq(at));
                merge(
                    tx,
                    &format!("{path}/{at}"),
                    &slot,
                    &base[b],
                    &new[n],
                    style,
                    exact,
                )?;
            }
            Step::Delete { at } => tx.delete(list, at)?,
            Step::Insert { at, new: range } => {
                for (offset, value) in new[range].iter().enumerate() {
                    create(tx, list, Prop::Seq(at + offset), true, value, style)?;
                }
            }
        }
    }
    Ok(())
}

fn merge_text<T: Transactable + ReadDoc>(
    tx: &mut T,
    text: &ObjId,
    base: &str,
    new: &str,
    exact: bool,
) -> Result<(), PatchError> {
    if exact || tx.text(text)? == base {
        tx.update_text(text, new)?;
        return Ok(());
    }
    // Another device edited the text since the base: the edit's splices, found again in
    // the text as it is now.
    let now: Vec<char> = tx.text(text)?.chars().collect();
    let base: Vec<char> = base.chars().collect();
    let new: Vec<char> = new.chars().collect();
    let now_of = align(&base, &now, |_, _, _| None);
    let steps = plan(&base, &new, &now_of, |_, _, _| None, |_, _| false);
    // Back to front: runs of deleted characters become one splice each.
    let mut deleting: Option<Range<usize>> = None;
    let flush = |tx: &mut T, run: Option<Range<usize>>| -> Result<(), PatchError> {
        if let Some(run) = run {
            tx.splice_text(text, run.start, run.len() as isize, "")?;
        }
        Ok(())
    };
    for step in steps {
        match step {
            Step::Delete { at } => match deleting.as_mut() {
                Some(run) if run.start == at + 1 => run.start = at,
                _ => flush(tx, deleting.replace(at..at + 1))?,
            },
            Step::Insert { at, new: range } => {
                flush(tx, deleting.take())?;
                let inserted: String = new[range].iter().collect();
                tx.splice_text(text, at, 0, &inserted)?;
            }
            Step::Edit { .. } => unreachable!("characters are never paired"),
        }
    }
    flush(tx, deleting)
}

/// One step of a sequence edit, at a position in the sequence as it is when the step runs.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Edit the element at `at` in place, from `base[base]` to `new[new]`.
    Edit { at: usize, base: usize, new: usize },
    /// Delete the element at `at`.
    Delete { at: usize },
    /// Insert `new[new]` at `at`, in order.
    Insert { at: usize, new: Range<usize> },
}

/// The steps that take a sequence from `base` to `new`, applied to the sequence as it is now
/// (`now_of[i]`: where base element `i` is now, if it still is), in the order to run them:
/// back to front, so that every position is still right when its step runs.
///
/// The edit script is the longest common subsequence of `base` and `new` ([`lcs`]); within
/// a run that replaces some elements by others, [`pairs`] finds the elements edited in place.
/// Equal or paired elements are edited in place when `differs` (a record matched by its key,
/// a string edited). An insert goes right after the base element before it in the script
/// (where that element is now, deleted or not), so an insert another device made next to a
/// deleted element keeps its place. A step on an element that is gone now is dropped: an
/// element another device deleted stays deleted.
fn plan<E: Hash + Eq + Ord>(
    base: &[E],
    new: &[E],
    now_of: &[Option<usize>],
    pair: impl Fn(usize, usize, bool) -> Option<f32>,
    differs: impl Fn(usize, usize) -> bool,
) -> Vec<Step> {
    // (position, 1 for an edit or delete / 0 for an insert, order): sorted descending, an
    // edit or delete runs before an insert at its position, and inserts at one position run
    // last first.
    let mut steps: Vec<((usize, u8, usize), Step)> = Vec::new();
    let mut after: Option<usize> = None;
    for (order, (b, n)) in script(base, new, pair).into_iter().enumerate() {
        match (b, n) {
            (Some(b), n) => {
                let Some(at) = now_of[b] else { continue };
                after = Some(at);
                match n {
                    None => steps.push(((at, 1, order), Step::Delete { at })),
                    Some(n) if differs(b, n) => steps.push((
                        (at, 1, order),
                        Step::Edit {
                            at,
                            base: b,
                            new: n,
                        },
                    )),
                    Some(_) => {}
                }
            }
            (None, Some(n)) => {
                let at = after.map_or(0, |a| a + 1);
                steps.push(((at, 0, order), Step::Insert { at, new: n..n + 1 }));
            }
            (None, None) => {}
        }
    }
    steps.sort_unstable_by_key(|(key, _)| std::cmp::Reverse(*key));
    merge_inserts(steps.into_iter().map(|(_, step)| step).collect())
}

/// The edit script from `old` to `new` in order, one entry per element: `(Some(b), Some(n))`
/// the same element (equal, or edited in place), `(Some(b), None)` deleted, `(None,
/// Some(n))` inserted.
fn script<E: Hash + Eq + Ord>(
    old: &[E],
    new: &[E],
    pair: impl Fn(usize, usize, bool) -> Option<f32>,
) -> Vec<(Option<usize>, Option<usize>)> {
    let mut out = Vec::with_capacity(old.len().max(new.len()));
    for op in lcs(old, new) {
        match op {
            similar::DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => out.extend((0..len).map(|k| (Some(old_index + k), Some(new_index + k)))),
            similar::DiffOp::Delete {
                old_index, old_len, ..
            } => out.extend((old_index..old_index + old_len).map(|b| (Some(b), None))),
            similar::DiffOp::Insert {
                new_index, new_len, ..
            } => out.extend((new_index..new_index + new_len).map(|n| (None, Some(n)))),
            similar::DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => pairs(
                old_index..old_index + old_len,
                new_index..new_index + new_len,
                &pair,
                &mut out,
            ),
        }
    }
    out
}

/// How many candidate pairs a run that replaces elements may weigh before it pairs by
/// position alone.
const PAIRING_BUDGET: usize = 4096;

/// The script of a run where the elements `old` were replaced by the elements `new`: each
/// new element is paired, in order, with the old element after the last pair that `pair`
/// scores highest (the same element, edited; `pair` is told when the run replaces one element
/// by one, and says `None` for elements that are not one); the old elements skipped are deleted and the
/// new elements not paired are inserted, deletes first, so that the inserts land after them.
/// A run too long to weigh pairs by position when its two sides are as long, else pairs
/// nothing.
fn pairs(
    old: Range<usize>,
    new: Range<usize>,
    pair: &impl Fn(usize, usize, bool) -> Option<f32>,
    out: &mut Vec<(Option<usize>, Option<usize>)>,
) {
    if old.len().saturating_mul(new.len()) > PAIRING_BUDGET {
        if old.len() == new.len() {
            out.extend(old.zip(new).map(|(b, n)| (Some(b), Some(n))));
        } else {
            out.extend(old.map(|b| (Some(b), None)));
            out.extend(new.map(|n| (None, Some(n))));
        }
        return;
    }
    let alone = old.len() == 1 && new.len() == 1;
    let mut next = old.start;
    let mut waiting: Vec<usize> = Vec::new();
    for n in new {
        // The most similar one; the first of equals.
        let best = (next..old.end)
            .filter_map(|b| pair(b, n, alone).map(|score| (b, score)))
            .fold(None, |best: Option<(usize, f32)>, (b, score)| match best {
                Some((_, top)) if top >= score => best,
                _ => Some((b, score)),
            });
        match best.map(|(b, _)| b) {
            Some(b) => {
                out.extend((next..b).map(|d| (Some(d), None)));
                out.extend(waiting.drain(..).map(|i| (None, Some(i))));
                out.push((Some(b), Some(n)));
                next = b + 1;
            }
            None => waiting.push(n),
        }
    }
    out.extend((next..old.end).map(|d| (Some(d), None)));
    out.extend(waiting.into_iter().map(|i| (None, Some(i))));
}

/// Adjacent single inserts at one position (they run last first) become one insert.
fn merge_inserts(steps: Vec<Step>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    for step in steps {
        if let (Some(Step::Insert { at, new }), Step::Insert { at: at2, new: new2 }) =
            (out.last_mut(), &step)
        {
            if at == at2 && new2.end == new.start {
                new.start = new2.start;
                continue;
            }
        }
        out.push(step);
    }
    out
}

/// Where each element of `base` is in `now`: the same script as an edit's ([`script`]),
/// so an element another device edited in place is found where it is.
fn align<E: Hash + Eq + Ord>(
    base: &[E],
    now: &[E],
    pair: impl Fn(usize, usize, bool) -> Option<f32>,
) -> Vec<Option<usize>> {
    let mut now_of = vec![None; base.len()];
    for (b, n) in script(base, now, pair) {
        if let (Some(b), Some(n)) = (b, n) {
            now_of[b] = Some(n);
        }
    }
    now_of
}

/// The edit script from `old` to `new` by their longest common subsequence (Myers; past
/// [`DIFF_DEADLINE`] a longer script, still correct).
fn lcs<E: Hash + Eq + Ord>(old: &[E], new: &[E]) -> Vec<similar::DiffOp> {
    similar::capture_diff_slices_deadline(
        similar::Algorithm::Myers,
        old,
        new,
        Some(Instant::now() + DIFF_DEADLINE),
    )
}

/// How much of an element's text an edit keeps for it to be the same element edited.
const SIMILAR: f32 = 0.5;

/// List elements as small numbers, equal when they are the same element: objects with the
/// key field by its value, everything else by its whole value.
struct Identities<'a> {
    key: Option<&'a str>,
    seen: HashMap<String, u32>,
}

impl<'a> Identities<'a> {
    fn new(key: Option<&'a str>) -> Self {
        Identities {
            key,
            seen: HashMap::new(),
        }
    }

    fn of(&mut self, value: &Json) -> u32 {
        let mut text = String::new();
        match self.keyed(value) {
            Some(k) => {
                // A key's identity never equals a whole value's: no JSON text starts with \u{1}.
                text.push('\u{1}');
                canonical(k, &mut text);
            }
            None => canonical(value, &mut text),
        }
        let next = self.seen.len() as u32;
        *self.seen.entry(text).or_insert(next)
    }

    /// The value of the key field, when `value` is a record that has one.
    fn keyed<'v>(&self, value: &'v Json) -> Option<&'v Json> {
        let Shape::Map(map) = shape(value) else {
            return None;
        };
        map.get(self.key?)
            .filter(|k| matches!(shape(k), Shape::Str(..) | Shape::Scalar(Json::Number(_))))
    }

    /// Two unmatched elements in a run are one element edited when neither is a record with
    /// a key (records with other keys are other records), they are of one kind, and, unless
    /// they are `alone` in their run (one element replaced by one), the edit kept at least
    /// half of it: of a string's characters, a list's elements, an object's fields (a field
    /// counts when its value is unchanged: two records of one shape share their keys, not
    /// their values). Scalars always pair. The score says how alike they are.
    fn pairable(&self, a: &Json, b: &Json, alone: bool) -> Option<f32> {
        if self.keyed(a).is_some() || self.keyed(b).is_some() {
            return None;
        }
        let ratio = |x: &str, y: &str| {
            similar::TextDiff::configure()
                .deadline(Instant::now() + DIFF_DEADLINE)
                .diff_chars(x, y)
                .ratio()
        };
        if alone && Kind::of(a) == Kind::of(b) {
            return Some(1.0);
        }
        let score = match (shape(a), shape(b)) {
            (Shape::Str(x, _), Shape::Str(y, _)) => ratio(x, y),
            (Shape::Map(x), Shape::Map(y)) => {
                let kept = x
                    .iter()
                    .filter(|(k, v)| y.get(*k).is_some_and(|w| same(v, w)))
                    .count();
                let fields = x.len() + y.keys().filter(|k| !x.contains_key(*k)).count();
                if fields == 0 {
                    1.0
                } else {
                    kept as f32 / fields as f32
                }
            }
            (Shape::List(x), Shape::List(y)) => {
                let mut ids = Identities::new(None);
                let xs: Vec<u32> = x.iter().map(|v| ids.of(v)).collect();
                let ys: Vec<u32> = y.iter().map(|v| ids.of(v)).collect();
                let kept: usize = lcs(&xs, &ys)
                    .iter()
                    .map(|op| match op {
                        similar::DiffOp::Equal { len, .. } => *len,
                        _ => 0,
                    })
                    .sum();
                if x.is_empty() && y.is_empty() {
                    1.0
                } else {
                    2.0 * kept as f32 / (x.len() + y.len()) as f32
                }
            }
            (Shape::Scalar(_), Shape::Scalar(_)) => SIMILAR,
            _ => return None,
        };
        (score >= SIMILAR).then_some(score)
    }
}

#[derive(PartialEq, Eq)]
enum Kind {
    Map,
    List,
    Str,
    Other,
}

impl Kind {
    fn of(v: &Json) -> Kind {
        match shape(v) {
            Shape::Map(_) => Kind::Map,
            Shape::List(_) => Kind::List,
            Shape::Str(..) => Kind::Str,
            Shape::Scalar(_) => Kind::Other,
        }
    }
}

/// A written value as the writer sees it: a [`super::typed::Text`] is a string marked as text.
enum Shape<'a> {
    Map(&'a Map<String, Json>),
    List(&'a [Json]),
    /// A string, and whether it is marked as text.
    Str(&'a str, bool),
    Scalar(&'a Json),
}

fn shape(value: &Json) -> Shape<'_> {
    match value {
        Json::Object(map) => match text_mark(map) {
            Some(s) => Shape::Str(s, true),
            None => Shape::Map(map),
        },
        Json::Array(items) => Shape::List(items),
        Json::String(s) => Shape::Str(s, false),
        other => Shape::Scalar(other),
    }
}

/// Equal as JSON values: numbers by value, object keys in any order, text marks aside.
fn same(a: &Json, b: &Json) -> bool {
    match (shape(a), shape(b)) {
        (Shape::Str(x, _), Shape::Str(y, _)) => x == y,
        (Shape::Map(x), Shape::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Shape::List(x), Shape::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Shape::Scalar(x), Shape::Scalar(y)) => json_equal(x, y),
        _ => false,
    }
}

/// A text of `value` that is equal for values [`same`] calls equal: keys sorted, numbers by
/// value, text marks aside.
fn canonical(value: &Json, out: &mut String) {
    match shape(value) {
        Shape::Str(s, _) => out.push_str(&Json::String(s.to_string()).to_string()),
        Shape::Map(map) => {
            out.push('{');
            for (i, (k, v)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Shape::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        Shape::Scalar(Json::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                out.push_str(&(f as i64).to_string())
            }
            (_, _, Some(f)) => out.push_str(&format!("{f:?}")),
            _ => out.push_str(&n.to_string()),
        },
        Shape::Scalar(other) => out.push_str(&other.to_string()),
    }
}

/// A whole number, as a counter takes it.
fn whole(value: &Json) -> Option<i64> {
    match value {
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        _ => None,
    }
}

fn existing<R: ReadDoc>(doc: &R, slot: &Slot) -> Result<Option<Existing>, PatchError> {
    match slot {
        Slot::Root => Ok(Some(Existing::Object(ObjType::Map, ROOT))),
        Slot::At(parent, prop) => super::existing(doc, parent, prop.clone()),
    }
}

fn render_existing<R: ReadDoc>(doc: &R, existing: &Existing) -> Json {
    match existing {
        Existing::Object(kind, id) => render::object(doc, id, *kind),
        Existing::Scalar(s) => render::scalar(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `plan` on letters and applies its steps to `now`.
    fn run(base: &str, new: &str, now: &str) -> String {
        let (b, n, c): (Vec<char>, Vec<char>, Vec<char>) = (
            base.chars().collect(),
            new.chars().collect(),
            now.chars().collect(),
        );
        let now_of = align(&b, &c, |_, _, _| None);
        let mut out = c.clone();
        for step in plan(&b, &n, &now_of, |_, _, _| None, |_, _| false) {
            match step {
                Step::Delete { at } => {
                    out.remove(at);
                }
                Step::Insert { at, new } => {
                    for (k, i) in new.enumerate() {
                        out.insert(at + k, n[i]);
                    }
                }
                Step::Edit { .. } => unreachable!(),
            }
        }
        out.into_iter().collect()
    }

    #[test]
    fn a_plan_applied_to_the_base_gives_the_new_sequence() {
        for (base, new) in [
            ("abc", "xabc"),
            ("abc", "abcx"),
            ("abc", "ac"),
            ("abc", ""),
            ("", "xyz"),
            ("abcdef", "xbcdyz"),
            ("abcabc", "cbacba"),
            ("aaa", "aaaa"),
        ] {
            assert_eq!(run(base, new, base), new, "{base} -> {new}");
        }
    }

    #[test]
    fn a_plan_applied_to_a_moved_on_sequence_keeps_both_edits() {
        // Another device put "1" in front and deleted "d"; this edit inserts "x" after "b"
        // and deletes "f".
        assert_eq!(run("abcdef", "abxcde", "1abcef"), "1abxce");
        // The element this edit deletes is gone already: nothing more happens.
        assert_eq!(run("abc", "ac", "ac"), "ac");
    }

    #[test]
    fn lists_of_records_match_by_key_and_other_values_by_value() {
        let mut ids = Identities::new(Some("id"));
        let a = serde_json::json!({"id": 1, "title": "a"});
        let a2 = serde_json::json!({"id": 1.0, "title": "b"});
        let b = serde_json::json!({"id": 2, "title": "a"});
        assert_eq!(ids.of(&a), ids.of(&a2));
        assert_ne!(ids.of(&a), ids.of(&b));
        assert_eq!(
            ids.of(&serde_json::json!({"x": [1, 2.0], "y": "s"})),
            ids.of(&serde_json::json!({"y": "s", "x": [1.0, 2]}))
        );
        let (x, y) = (
            |s: &str| serde_json::json!(s),
            |s: &str| serde_json::json!(s),
        );
        assert!(ids.pairable(&a, &b, true).is_none());
        assert!(ids
            .pairable(&x("cheese"), &y("blue cheese"), false)
            .is_some());
        assert!(ids.pairable(&x("cheese"), &y("milk"), false).is_none());
        // One element replaced by one is that element edited, if of the same kind.
        assert!(ids.pairable(&x("cheese"), &y("milk"), true).is_some());
        assert!(ids.pairable(&x("1"), &serde_json::json!(1), true).is_none());
        assert!(ids
            .pairable(&serde_json::json!(1), &serde_json::json!(true), false)
            .is_some());
        // Records of one shape pair by the fields they kept, not by their shared keys.
        let u2 = serde_json::json!({"uuid": "u2", "title": "dishes", "done": false});
        let u3 = serde_json::json!({"uuid": "u3", "title": "new", "done": false});
        let u2_edited = serde_json::json!({"uuid": "u2", "title": "wash", "done": false});
        assert!(ids.pairable(&u2, &u3, false).is_none());
        assert!(ids.pairable(&u2, &u2_edited, false).is_some());
    }

    #[test]
    fn a_run_pairs_the_similar_elements_and_deletes_before_it_inserts() {
        let base = ["apples", "bread", "cheese"].map(serde_json::Value::from);
        let new = ["apples", "blue cheese", "milk"].map(serde_json::Value::from);
        let ids = Identities::new(None);
        let (b, n): (Vec<String>, Vec<String>) = (
            base.iter().map(|v| v.to_string()).collect(),
            new.iter().map(|v| v.to_string()).collect(),
        );
        // bread is deleted, cheese edited into blue cheese, milk inserted after it.
        assert_eq!(
            script(&b, &n, |x, y, alone| ids.pairable(&base[x], &new[y], alone)),
            vec![
                (Some(0), Some(0)),
                (Some(1), None),
                (Some(2), Some(1)),
                (None, Some(2))
            ]
        );
    }
}

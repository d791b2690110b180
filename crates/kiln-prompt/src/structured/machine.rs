//! A byte-level pushdown automaton for JSON driven by a compiled schema.
//!
//! A [`State`] is a set of alternatives (more than one only while the branches of a union are
//! undecided); each alternative is a stack of frames, innermost last. [`State::step`] consumes one
//! byte and returns the next state, or `None` when the byte cannot continue any valid output.
//!
//! Limits that keep a small model from looping: at most [`MAX_WS`] consecutive whitespace bytes
//! between tokens (and none before the top-level value or after it), and at most [`MAX_DIGITS`]
//! digits in a number.

use super::schema::{Grammar, Node, NodeId};

/// The most consecutive whitespace bytes allowed between JSON tokens.
pub(crate) const MAX_WS: u8 = 24;
/// The most digits of a number (integer and fraction together).
pub(crate) const MAX_DIGITS: u8 = 15;

/// Marks a free (undeclared) key in [`ObjSt::Colon`].
const FREE: u8 = u8::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ObjSt {
    /// After `{`: a key or `}`.
    Open,
    /// Inside a declared key: the candidate properties and the bytes matched.
    Key { cands: u64, pos: u16 },
    /// After a key: `:`.
    Colon { prop: u8 },
    /// After a value: `,` or `}`.
    AfterValue,
    /// After `,`: a key.
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ArrSt {
    Open,
    AfterValue,
    Comma,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum NumSt {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Esc {
    None,
    Backslash,
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Frame {
    /// Before a value of this node (whitespace allowed).
    Value(NodeId),
    Obj {
        node: NodeId,
        used: u64,
        st: ObjSt,
    },
    Arr {
        node: NodeId,
        count: u32,
        st: ArrSt,
    },
    /// Inside a string, after the opening quote. `len` counts characters (only when limited).
    Str {
        min: u32,
        max: Option<u32>,
        len: u32,
        esc: Esc,
        utf8: u8,
    },
    Num {
        integer: bool,
        st: NumSt,
        digits: u8,
    },
    /// Inside one of a node's literals: the candidates left and the bytes matched.
    Lit {
        node: NodeId,
        cands: u64,
        pos: u16,
    },
}

/// One way of reading the output so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Alt {
    stack: Vec<Frame>,
    ws: u8,
}

/// The automaton's state: every alternative still alive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct State {
    alts: Vec<Alt>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

impl State {
    /// The state before any output.
    pub(crate) fn start(g: &Grammar) -> Self {
        State {
            alts: vec![Alt {
                stack: vec![Frame::Value(g.root)],
                ws: 0,
            }],
        }
    }

    /// The state after `b`, or `None` if no output can continue with it.
    pub(crate) fn step(&self, g: &Grammar, b: u8) -> Option<State> {
        let mut out: Vec<Alt> = Vec::with_capacity(self.alts.len());
        let mut scratch = Vec::new();
        for alt in &self.alts {
            feed(g, alt.clone(), b, &mut scratch);
            for a in scratch.drain(..) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        if out.is_empty() {
            None
        } else {
            Some(State { alts: out })
        }
    }

    /// The state after every byte of `bytes`.
    pub(crate) fn step_all(&self, g: &Grammar, bytes: &[u8]) -> Option<State> {
        let mut s = self.clone();
        for &b in bytes {
            s = s.step(g, b)?;
        }
        Some(s)
    }

    /// Whether the output may end here (a whole value; a top-level number or literal may also go on).
    pub(crate) fn can_finish(&self, g: &Grammar) -> bool {
        self.alts.iter().any(|a| match a.stack.as_slice() {
            [] => true,
            [only] => endable(g, only),
            _ => false,
        })
    }

    /// Whether the output is a whole value and nothing may follow it.
    pub(crate) fn is_done(&self) -> bool {
        self.alts.iter().all(|a| a.stack.is_empty())
    }
}

/// Whether a frame holds a whole value that a following byte may end (numbers, literals).
fn endable(g: &Grammar, f: &Frame) -> bool {
    match *f {
        Frame::Num { st, .. } => matches!(
            st,
            NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::ExpDigits
        ),
        Frame::Lit { node, cands, pos } => lit_exact(g, node, cands, pos),
        _ => false,
    }
}

fn literals(g: &Grammar, node: NodeId) -> &[Vec<u8>] {
    match g.node(node) {
        Node::Literals(l) => l,
        _ => &[],
    }
}

/// Whether a candidate literal is matched whole.
fn lit_exact(g: &Grammar, node: NodeId, cands: u64, pos: u16) -> bool {
    literals(g, node)
        .iter()
        .enumerate()
        .any(|(i, l)| cands & (1 << i) != 0 && l.len() == pos as usize)
}

/// Ends the innermost value: its frame is popped (the parent already expects what follows).
fn pop(mut alt: Alt, out: &mut Vec<Alt>) {
    alt.stack.pop();
    out.push(alt);
}

/// Feeds `b` to one alternative, pushing every resulting alternative to `out`.
fn feed(g: &Grammar, mut alt: Alt, b: u8, out: &mut Vec<Alt>) {
    let Some(&top) = alt.stack.last() else {
        return; // Nothing may follow the top-level value.
    };
    let between = matches!(
        top,
        Frame::Value(_)
            | Frame::Obj {
                st: ObjSt::Open | ObjSt::Colon { .. } | ObjSt::AfterValue | ObjSt::Comma,
                ..
            }
            | Frame::Arr { .. }
    );
    if between && is_ws(b) {
        // No whitespace before the top-level value.
        if alt.ws < MAX_WS && !(alt.stack.len() == 1 && matches!(top, Frame::Value(_))) {
            alt.ws += 1;
            out.push(alt);
        }
        return;
    }
    alt.ws = 0;
    let last = alt.stack.len() - 1;
    match top {
        Frame::Value(node) => start_value(g, alt, node, b, out),
        Frame::Obj { node, used, st } => {
            let Node::Object {
                props,
                required,
                additional,
            } = g.node(node)
            else {
                return;
            };
            let all = if props.len() == 64 {
                u64::MAX
            } else {
                (1u64 << props.len()) - 1
            };
            let free = all & !used;
            let closable = required & !used == 0;
            let set = |alt: &mut Alt, st: ObjSt| alt.stack[last] = Frame::Obj { node, used, st };
            match st {
                ObjSt::Open | ObjSt::Comma => {
                    if b == b'}' && st == ObjSt::Open && closable {
                        pop(alt, out);
                    } else if b == b'"' {
                        if free != 0 {
                            set(
                                &mut alt,
                                ObjSt::Key {
                                    cands: free,
                                    pos: 1,
                                },
                            );
                            out.push(alt);
                        } else if props.is_empty() && additional.is_some() {
                            set(&mut alt, ObjSt::Colon { prop: FREE });
                            alt.stack.push(Frame::Str {
                                min: 0,
                                max: None,
                                len: 0,
                                esc: Esc::None,
                                utf8: 0,
                            });
                            out.push(alt);
                        }
                    }
                }
                ObjSt::Key { cands, pos } => {
                    let p = pos as usize;
                    let mut next = 0u64;
                    let mut done = None;
                    for (i, prop) in props.iter().enumerate() {
                        if cands & (1 << i) != 0 && prop.key.get(p) == Some(&b) {
                            next |= 1 << i;
                            if prop.key.len() == p + 1 {
                                done = Some(i as u8);
                            }
                        }
                    }
                    match (next, done) {
                        (0, _) => {}
                        (_, Some(prop)) => {
                            set(&mut alt, ObjSt::Colon { prop });
                            out.push(alt);
                        }
                        (cands, None) => {
                            set(
                                &mut alt,
                                ObjSt::Key {
                                    cands,
                                    pos: pos + 1,
                                },
                            );
                            out.push(alt);
                        }
                    }
                }
                ObjSt::Colon { prop } => {
                    if b != b':' {
                        return;
                    }
                    let (child, used) = if prop == FREE {
                        match additional {
                            Some(a) => (*a, used),
                            None => return,
                        }
                    } else {
                        (props[prop as usize].node, used | (1 << prop))
                    };
                    alt.stack[last] = Frame::Obj {
                        node,
                        used,
                        st: ObjSt::AfterValue,
                    };
                    alt.stack.push(Frame::Value(child));
                    out.push(alt);
                }
                ObjSt::AfterValue => {
                    if b == b'}' && closable {
                        pop(alt, out);
                    } else if b == b',' && (free != 0 || (props.is_empty() && additional.is_some()))
                    {
                        set(&mut alt, ObjSt::Comma);
                        out.push(alt);
                    }
                }
            }
        }
        Frame::Arr { node, count, st } => {
            let Node::Array { items, min, max } = *g.node(node) else {
                return;
            };
            match st {
                ArrSt::Open | ArrSt::Comma => {
                    if b == b']' && st == ArrSt::Open && min == 0 {
                        pop(alt, out);
                    } else if b != b']' && max.is_none_or(|m| count < m) {
                        alt.stack[last] = Frame::Arr {
                            node,
                            count: count + 1,
                            st: ArrSt::AfterValue,
                        };
                        alt.stack.push(Frame::Value(items));
                        feed(g, alt, b, out);
                    }
                }
                ArrSt::AfterValue => {
                    if b == b']' && count >= min {
                        pop(alt, out);
                    } else if b == b',' && max.is_none_or(|m| count < m) {
                        alt.stack[last] = Frame::Arr {
                            node,
                            count,
                            st: ArrSt::Comma,
                        };
                        out.push(alt);
                    }
                }
            }
        }
        Frame::Str {
            min,
            max,
            len,
            esc,
            utf8,
        } => {
            let counted = max.is_some() || min > 0;
            let room = max.is_none_or(|m| len < m);
            let grow = |len: u32| {
                if counted {
                    (len + 1).min(max.unwrap_or(u32::MAX).max(min))
                } else {
                    0
                }
            };
            let next = if utf8 > 0 {
                (0x80..=0xBF)
                    .contains(&b)
                    .then_some((len, Esc::None, utf8 - 1))
            } else {
                match esc {
                    Esc::Backslash => match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                            Some((grow(len), Esc::None, 0))
                        }
                        b'u' => Some((len, Esc::Hex(4), 0)),
                        _ => None,
                    },
                    Esc::Hex(n) => b.is_ascii_hexdigit().then(|| {
                        if n == 1 {
                            (grow(len), Esc::None, 0)
                        } else {
                            (len, Esc::Hex(n - 1), 0)
                        }
                    }),
                    Esc::None => match b {
                        b'"' => {
                            if len >= min {
                                pop(alt, out);
                            }
                            return;
                        }
                        b'\\' => room.then_some((len, Esc::Backslash, 0)),
                        0x00..=0x1F => None,
                        0x20..=0x7F => room.then(|| (grow(len), Esc::None, 0)),
                        0xC2..=0xDF => room.then(|| (grow(len), Esc::None, 1)),
                        0xE0..=0xEF => room.then(|| (grow(len), Esc::None, 2)),
                        0xF0..=0xF4 => room.then(|| (grow(len), Esc::None, 3)),
                        _ => None,
                    },
                }
            };
            if let Some((len, esc, utf8)) = next {
                alt.stack[last] = Frame::Str {
                    min,
                    max,
                    len,
                    esc,
                    utf8,
                };
                out.push(alt);
            }
        }
        Frame::Num {
            integer,
            st,
            digits,
        } => {
            let digit = b.is_ascii_digit();
            let more = digits < MAX_DIGITS;
            let next = match (st, b) {
                (NumSt::Start, b'-') => Some((NumSt::Minus, digits)),
                (NumSt::Start | NumSt::Minus, b'0') => Some((NumSt::Zero, 1)),
                (NumSt::Start | NumSt::Minus, b'1'..=b'9') => Some((NumSt::Int, 1)),
                (NumSt::Int, _) if digit && more => Some((NumSt::Int, digits + 1)),
                (NumSt::Zero | NumSt::Int, b'.') if !integer => Some((NumSt::Dot, digits)),
                (NumSt::Dot, _) if digit && more => Some((NumSt::Frac, digits + 1)),
                (NumSt::Frac, _) if digit && more => Some((NumSt::Frac, digits + 1)),
                (NumSt::Zero | NumSt::Int | NumSt::Frac, b'e' | b'E') if !integer => {
                    Some((NumSt::Exp, 0))
                }
                (NumSt::Exp, b'+' | b'-') => Some((NumSt::ExpSign, 0)),
                (NumSt::Exp | NumSt::ExpSign, _) if digit => Some((NumSt::ExpDigits, 1)),
                (NumSt::ExpDigits, _) if digit && digits < 3 => {
                    Some((NumSt::ExpDigits, digits + 1))
                }
                _ => None,
            };
            if let Some((st, digits)) = next {
                alt.stack[last] = Frame::Num {
                    integer,
                    st,
                    digits,
                };
                out.push(alt);
            } else if endable(g, &top) && alt.stack.len() > 1 {
                // The byte ends the number and belongs to the enclosing value.
                alt.stack.pop();
                feed(g, alt, b, out);
            }
        }
        Frame::Lit { node, cands, pos } => {
            let lits = literals(g, node);
            let p = pos as usize;
            let mut next = 0u64;
            for (i, l) in lits.iter().enumerate() {
                if cands & (1 << i) != 0 && l.get(p) == Some(&b) {
                    next |= 1 << i;
                }
            }
            if next != 0 {
                lit_advance(g, alt, node, next, pos + 1, out);
            } else if lit_exact(g, node, cands, pos) && alt.stack.len() > 1 {
                alt.stack.pop();
                feed(g, alt, b, out);
            }
        }
    }
}

/// Moves a literal frame on; a literal that is whole and that nothing longer extends ends at once.
fn lit_advance(g: &Grammar, mut alt: Alt, node: NodeId, cands: u64, pos: u16, out: &mut Vec<Alt>) {
    let lits = literals(g, node);
    let longer = lits
        .iter()
        .enumerate()
        .any(|(i, l)| cands & (1 << i) != 0 && l.len() > pos as usize);
    if lit_exact(g, node, cands, pos) && !longer {
        pop(alt, out);
    } else {
        let last = alt.stack.len() - 1;
        alt.stack[last] = Frame::Lit { node, cands, pos };
        out.push(alt);
    }
}

/// The first byte of a value of `node` (whitespace already handled).
fn start_value(g: &Grammar, mut alt: Alt, node: NodeId, b: u8, out: &mut Vec<Alt>) {
    let last = alt.stack.len() - 1;
    match g.node(node) {
        Node::Union(branches) => {
            for &br in branches {
                let mut a = alt.clone();
                a.stack[last] = Frame::Value(br);
                start_value(g, a, br, b, out);
            }
        }
        Node::Object { .. } => {
            if b == b'{' {
                alt.stack[last] = Frame::Obj {
                    node,
                    used: 0,
                    st: ObjSt::Open,
                };
                out.push(alt);
            }
        }
        Node::Array { .. } => {
            if b == b'[' {
                alt.stack[last] = Frame::Arr {
                    node,
                    count: 0,
                    st: ArrSt::Open,
                };
                out.push(alt);
            }
        }
        Node::String { min, max } => {
            if b == b'"' {
                alt.stack[last] = Frame::Str {
                    min: *min,
                    max: *max,
                    len: 0,
                    esc: Esc::None,
                    utf8: 0,
                };
                out.push(alt);
            }
        }
        Node::Number { integer } => {
            alt.stack[last] = Frame::Num {
                integer: *integer,
                st: NumSt::Start,
                digits: 0,
            };
            feed(g, alt, b, out);
        }
        Node::Literals(lits) => {
            let mut cands = 0u64;
            for (i, l) in lits.iter().enumerate() {
                if l.first() == Some(&b) {
                    cands |= 1 << i;
                }
            }
            if cands != 0 {
                lit_advance(g, alt, node, cands, 1, out);
            }
        }
    }
}

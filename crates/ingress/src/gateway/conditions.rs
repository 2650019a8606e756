//! Conditions as the compiler decides them (type, status, reason, message), before status.rs stamps them with
//! the object's generation and transition times.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

pub fn cond(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// Sets `c` in `list`, replacing one of its type.
pub fn set(list: &mut Vec<Cond>, c: Cond) {
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => *x = c,
        None => list.push(c),
    }
}

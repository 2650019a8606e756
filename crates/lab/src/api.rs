//! The lab's API: one JSON request per line on a Unix socket in the lab's state dir, answered by one JSON line.
//! CLI commands are its clients (node agents and DNS use the Kubernetes API).

use crate::error::{Error, Result, io};
use crate::spec::Paths;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use weft_model::Key;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Request {
    /// Create or update objects, all or none; namespaced objects without a namespace go to `namespace`.
    Apply { objects: Vec<Value>, namespace: String },
    /// Delete objects (pods and namespaces finish asynchronously, as in a cluster).
    Delete { keys: Vec<Key> },
    /// Objects of `kind` (every kind when absent), in one namespace or all, or one by name.
    Get {
        kind: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
    },
    /// The kinds present in the store.
    Kinds,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Response {
    Ok(Value),
    Error(String),
}

/// What `apply` and `delete` report per object.
#[derive(Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub key: Key,
    /// `created`, `configured`, `unchanged`, `deleted`.
    pub action: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ApplyReply {
    pub outcomes: Vec<Outcome>,
    pub warnings: Vec<String>,
}

pub struct Client {
    reader: BufReader<UnixStream>,
    lab: String,
}

impl Client {
    /// Connects to the lab's supervisor.
    pub fn connect(paths: &Paths) -> Result<Client> {
        let socket = paths.socket();
        let stream = UnixStream::connect(&socket).map_err(|e| Error::Lab {
            lab: paths.lab.clone(),
            msg: match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "not running (start it with `weft lab up`, or pick another with --lab)".into()
                }
                _ => format!("connecting to {}: {e}", socket.display()),
            },
        })?;
        Ok(Client {
            reader: BufReader::new(stream),
            lab: paths.lab.clone(),
        })
    }

    /// Sends one request and returns the answer's value.
    pub fn call(&mut self, request: &Request) -> Result<Value> {
        self.send(request)?;
        self.receive()
    }

    fn send(&mut self, request: &Request) -> Result<()> {
        let mut line = serde_json::to_vec(request).map_err(|e| Error::Invalid(e.to_string()))?;
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(io("sending to the lab supervisor"))
    }

    /// Reads the next answer line.
    fn receive(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(io("reading from the lab supervisor"))?;
        if n == 0 {
            return Err(Error::Lab {
                lab: self.lab.clone(),
                msg: "the supervisor closed the connection".into(),
            });
        }
        match serde_json::from_str(&line) {
            Ok(Response::Ok(value)) => Ok(value),
            Ok(Response::Error(msg)) => Err(Error::Invalid(msg)),
            Err(e) => Err(Error::Invalid(format!("malformed answer from the lab supervisor: {e}"))),
        }
    }
}

//! The lab's watch socket: one JSON request per line on a Unix socket in the lab's state dir, answered by one line
//! per new revision. The node agents and DNS are its clients; everything else uses the Kubernetes API.

use crate::error::{Error, Result, io};
use crate::spec::Paths;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use weft_model::snapshot::Stored;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Request {
    /// Snapshots, each sent as soon as the store's revision exceeds the last one sent (starting at `after`) and
    /// the objects of `kinds` (all kinds when absent) changed.
    Watch { after: u64, kinds: Option<Vec<String>> },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Response {
    Ok(Value),
    Error(String),
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

    pub fn send(&mut self, request: &Request) -> Result<()> {
        let mut line = serde_json::to_vec(request).map_err(|e| Error::Invalid(e.to_string()))?;
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(io("sending to the lab supervisor"))
    }

    /// Reads the next answer line.
    pub fn receive(&mut self) -> Result<Value> {
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

    /// The next snapshot of a watch started with `send(&Request::Watch { .. })`.
    pub fn next_snapshot(&mut self) -> Result<Stored> {
        let value = self.receive()?;
        serde_json::from_value(value).map_err(|e| Error::Invalid(format!("malformed snapshot: {e}")))
    }
}

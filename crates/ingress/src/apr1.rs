//! Apache's `$apr1$` password hash (MD5-crypt with Apache's magic string), the form `htpasswd` writes unless told
//! otherwise and so the one most ingress-nginx auth Secrets hold. Only verification: weft never makes these.
//! MD5 is the `md-5` crate's; what is here is the scheme's salting, its 1,000 rounds and its base-64 alphabet.

use md5::{Digest, Md5};

const MAGIC: &str = "$apr1$";
/// The crypt alphabet, least significant six bits first.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An `$apr1$SALT$HASH` line's salt and hash; None for any other form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Apr1 {
    salt: String,
    hash: String,
}

impl Apr1 {
    pub fn parse(text: &str) -> Option<Apr1> {
        let (salt, hash) = text.strip_prefix(MAGIC)?.split_once('$')?;
        let valid = |s: &str| s.bytes().all(|b| ITOA64.contains(&b));
        (salt.len() <= 8 && hash.len() == 22 && valid(salt) && valid(hash)).then(|| Apr1 {
            salt: salt.to_string(),
            hash: hash.to_string(),
        })
    }

    /// Whether `password` hashes to this, compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let got = encode(password.as_bytes(), self.salt.as_bytes());
        got.len() == self.hash.len()
            && got
                .bytes()
                .zip(self.hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The 22 characters after the salt for `password` and `salt`.
fn encode(password: &[u8], salt: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut first = Md5::new().chain_update(password).chain_update(MAGIC).chain_update(salt);
    for chunk in password.chunks(16) {
        first.update(&alternate[..chunk.len()]);
    }
    // One byte per bit of the password's length: a zero byte for a set bit, the password's first byte otherwise.
    let mut n = password.len();
    while n > 0 {
        if n & 1 == 1 {
            first.update([0u8]);
        } else {
            first.update(&password[..1]);
        }
        n >>= 1;
    }
    let mut digest = first.finalize();
    for round in 0..1000 {
        let mut next = Md5::new();
        if round % 2 == 1 {
            next.update(password);
        } else {
            next.update(digest);
        }
        if round % 3 != 0 {
            next.update(salt);
        }
        if round % 7 != 0 {
            next.update(password);
        }
        if round % 2 == 1 {
            next.update(digest);
        } else {
            next.update(password);
        }
        digest = next.finalize();
    }
    let d = digest;
    let mut out = String::with_capacity(22);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push64(
            &mut out,
            u32::from(d[a]) << 16 | u32::from(d[b]) << 8 | u32::from(d[c]),
            4,
        );
    }
    push64(&mut out, u32::from(d[11]), 2);
    out
}

/// `count` characters of `value`'s low bits, six at a time.
fn push64(out: &mut String, mut value: u32, count: usize) {
    for _ in 0..count {
        out.push(char::from(ITOA64[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines made by `openssl passwd -apr1 -salt SALT PASSWORD` (and one from htpasswd).
    #[test]
    fn hashes_as_openssl_and_htpasswd_make_them() {
        for (line, password) in [
            ("$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0", "password"),
            ("$apr1$abc$BfqKdn9xFDWJPa3kcp/PH0", ""),
            (
                "$apr1$12345678$1xIqBZm1CwHUUhZM3BBIq1",
                "a much longer password than sixteen bytes, éh",
            ),
            ("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "password"),
        ] {
            let hash = Apr1::parse(line).unwrap_or_else(|| panic!("{line} parses"));
            assert!(hash.verify(password), "{line} is {password:?}");
            assert!(!hash.verify("passwore"), "{line} is not another password");
        }
    }

    #[test]
    fn other_forms_are_not_apr1() {
        for line in [
            "$1$xxxxxxxx$8XJIcl6ZXqBMCK0qFevqT1",
            "$apr1$toolongsalt$dxHfLAsjHkDRmG83UXe8K0",
            "$apr1$xxxxxxxx$short",
            "$apr1$xx:x$dxHfLAsjHkDRmG83UXe8K0",
            "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
        ] {
            assert_eq!(Apr1::parse(line), None, "{line}");
        }
    }
}

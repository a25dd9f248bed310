//! PURE OpenPGP check of a detached signature (a release's SHA256SUMS) against a pinned public key: armored or binary keys and signatures, v4 RSA over SHA-256/384/512, signing subkeys bound by the primary key, key expiry and revocation.
//!
//! Only what release signatures need is implemented (RFC 4880 / 9580 v4 packets): a signature
//! must be a v4 binary- or text-document signature by an RSA key or signing subkey of the
//! keyring, whose self-signature (user ID certification or subkey binding, itself verified with
//! the primary key) is valid and not expired when the signature was made. SHA-1 and other
//! algorithms are refused, not guessed at. The keyring is pinned in gantry (or given by the
//! operator); a key or subkey revocation in it, verified with the primary key, makes the key
//! trusted for nothing.

use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents};

/// One key of a keyring: a primary key or one of its subkeys.
#[derive(Debug, Clone)]
pub struct Key {
    /// The v4 fingerprint (SHA-1 of the key packet), upper-case hex.
    pub fingerprint: String,
    /// The fingerprint of the primary key this one belongs to (its own for a primary key).
    pub primary: String,
    /// The first user ID (of a primary key; empty for a subkey).
    pub user: String,
    /// Creation time (seconds since the epoch).
    pub created: u32,
    /// When the newest valid self-signature says the key expires, if it does.
    pub expires: Option<u64>,
    /// Whether the newest valid self-signature allows signing data.
    pub signs: bool,
    /// When a revocation signature by the primary key revoked it, if one did.
    pub revoked: Option<u32>,
    /// RSA modulus and exponent (big-endian, no leading zeros); `None` for other algorithms.
    rsa: Option<(Vec<u8>, Vec<u8>)>,
    /// The key packet as it is hashed into self-signatures (0x99, length, body).
    hashed: Vec<u8>,
    /// When the self-signature in force (the newest valid one) was made.
    self_signed: Option<u32>,
}

/// The keys a signature may come from.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub keys: Vec<Key>,
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The fingerprint of the key (or subkey) that made the signature.
    pub signer: String,
    /// The fingerprint of its primary key.
    pub primary: String,
    /// The primary key's user ID.
    pub user: String,
    /// When the signature was made (seconds since the epoch).
    pub created: u32,
}

impl Keyring {
    /// Reads every public key (with its subkeys and self-signatures) of an armored or binary
    /// keyring. A keyring with no usable signing key is an error.
    pub fn parse(data: &[u8]) -> Result<Keyring, String> {
        let data = dearmor(data, "PUBLIC KEY BLOCK")?;
        let mut keys: Vec<Key> = Vec::new();
        // The primary key being read, its user IDs, and the index of the key that the
        // signatures that follow belong to.
        let mut primary: Option<usize> = None;
        let mut current: Option<usize> = None;
        let mut user: Option<Vec<u8>> = None;
        for packet in packets(&data)? {
            match packet.tag {
                6 => {
                    let key = public_key(packet.body)?;
                    keys.push(key);
                    primary = Some(keys.len() - 1);
                    current = primary;
                    user = None;
                }
                14 => {
                    let Some(p) = primary else {
                        return Err("a subkey comes before any primary key".into());
                    };
                    let mut key = public_key(packet.body)?;
                    key.primary = keys[p].fingerprint.clone();
                    // A subkey signs nothing until a binding signature says it may.
                    key.signs = false;
                    keys.push(key);
                    current = Some(keys.len() - 1);
                    user = None;
                }
                13 => {
                    user = Some(packet.body.to_vec());
                    if let Some(p) = primary {
                        if keys[p].user.is_empty() {
                            keys[p].user = String::from_utf8_lossy(packet.body).into_owned();
                        }
                    }
                }
                2 => {
                    let (Some(p), Some(c)) = (primary, current) else {
                        continue;
                    };
                    let Ok(sig) = Signature::parse(packet.body) else {
                        continue;
                    };
                    self_signature(&mut keys, p, c, user.as_deref(), &sig);
                }
                _ => {}
            }
        }
        if keys.is_empty() {
            return Err("no public key in it".into());
        }
        Ok(Keyring { keys })
    }

    /// The fingerprints of the primary keys (for messages).
    pub fn primaries(&self) -> Vec<String> {
        self.keys
            .iter()
            .filter(|k| k.primary == k.fingerprint)
            .map(|k| k.fingerprint.clone())
            .collect()
    }
}

/// Applies a signature found after key `c` (of primary `p`): a certification of the user ID
/// just read, a direct-key signature, a subkey binding, or a key or subkey revocation, if the
/// primary key verifies it.
fn self_signature(keys: &mut [Key], p: usize, c: usize, user: Option<&[u8]>, sig: &Signature) {
    let mut message = keys[p].hashed.clone();
    match sig.kind {
        0x10..=0x13 if c == p => {
            let Some(user) = user else { return };
            message.push(0xB4);
            message.extend_from_slice(&(user.len() as u32).to_be_bytes());
            message.extend_from_slice(user);
        }
        0x1F | 0x20 if c == p => {}
        0x18 | 0x28 if c != p => message.extend_from_slice(&keys[c].hashed),
        _ => return,
    }
    if verify_with(&keys[p], sig, &message).is_err() {
        return;
    }
    if matches!(sig.kind, 0x20 | 0x28) {
        // Whatever the stated reason: a revoked release key is trusted for nothing.
        keys[c].revoked = Some(sig.created.unwrap_or(0));
        return;
    }
    // The newest valid self-signature decides expiry and flags.
    let key = &mut keys[c];
    let created = sig.created.unwrap_or(0);
    if key.hashed.is_empty() || key.self_signed.is_some_and(|t| created < t) {
        return;
    }
    key.expires = sig
        .key_expires
        .filter(|s| *s != 0)
        .map(|s| u64::from(key.created) + u64::from(s));
    key.signs = match sig.key_flags {
        Some(flags) => flags & 0x02 != 0,
        // Without flags a primary key may sign; a subkey binding must say so.
        None => c == p,
    };
    key.self_signed = Some(created);
}

/// Checks `signature` (armored or binary, detached) over `document` with `keyring`.
pub fn verify_detached(
    keyring: &Keyring,
    document: &[u8],
    signature: &[u8],
) -> Result<Verified, String> {
    let data = dearmor(signature, "SIGNATURE")?;
    let packets = packets(&data)?;
    let mut problems = Vec::new();
    for packet in packets.iter().filter(|p| p.tag == 2) {
        let sig = match Signature::parse(packet.body) {
            Ok(sig) => sig,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        match verify_one(keyring, document, &sig) {
            Ok(verified) => return Ok(verified),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        return Err("it holds no signature".into());
    }
    Err(problems.join("; "))
}

fn verify_one(keyring: &Keyring, document: &[u8], sig: &Signature) -> Result<Verified, String> {
    let created = sig
        .created
        .ok_or("the signature has no creation time in its signed part")?;
    let issuer = sig
        .issuer_fingerprint
        .clone()
        .or_else(|| sig.issuer_id.clone())
        .ok_or("the signature names no issuer")?;
    let key = keyring
        .keys
        .iter()
        .find(|k| k.fingerprint == issuer || k.fingerprint.ends_with(&issuer))
        .ok_or_else(|| {
            format!(
                "it was made by key {issuer}, which is not the trusted key ({})",
                keyring.primaries().join(", ")
            )
        })?;
    let primary = keyring.keys.iter().find(|k| k.fingerprint == key.primary);
    if let Some((revoked, at)) = [Some(key), primary]
        .into_iter()
        .flatten()
        .find_map(|k| k.revoked.map(|at| (k, at)))
    {
        return Err(format!(
            "key {} was revoked on {}: it is trusted for nothing",
            revoked.fingerprint,
            date(u64::from(at))
        ));
    }
    if !key.signs {
        return Err(format!(
            "key {} may not sign (no valid self-signature of the primary key allows it)",
            key.fingerprint
        ));
    }
    if let Some(expires) = key.expires {
        if u64::from(created) > expires {
            return Err(format!(
                "key {} had expired ({}) when the signature was made ({})",
                key.fingerprint,
                date(expires),
                date(u64::from(created))
            ));
        }
    }
    let message = match sig.kind {
        0x00 => document.to_vec(),
        // A text signature covers the document with CRLF line ends.
        0x01 => canonical_text(document),
        other => {
            return Err(format!(
                "it is a signature of type 0x{other:02x}, not a document signature"
            ))
        }
    };
    verify_with(key, sig, &message).map_err(|problem| {
        format!(
            "the signature by key {} does not match the file: {problem}",
            key.fingerprint
        )
    })?;
    Ok(Verified {
        signer: key.fingerprint.clone(),
        primary: key.primary.clone(),
        user: primary.map(|p| p.user.clone()).unwrap_or_default(),
        created,
    })
}

/// Verifies `sig` over `message` (the signed data before the signature's own hashed part)
/// with `key`.
fn verify_with(key: &Key, sig: &Signature, message: &[u8]) -> Result<(), String> {
    let Some((n, e)) = &key.rsa else {
        return Err(format!(
            "key {} is not an RSA key (the only algorithm gantry checks)",
            key.fingerprint
        ));
    };
    let params = match sig.hash {
        8 => &signature::RSA_PKCS1_2048_8192_SHA256,
        9 => &signature::RSA_PKCS1_2048_8192_SHA384,
        10 => &signature::RSA_PKCS1_2048_8192_SHA512,
        2 => return Err("SHA-1 signatures are not accepted".into()),
        other => return Err(format!("hash algorithm {other} is not supported")),
    };
    if !matches!(sig.algorithm, 1 | 3) {
        return Err(format!("public-key algorithm {} is not RSA", sig.algorithm));
    }
    let mut data = Vec::with_capacity(message.len() + sig.hashed.len() + 6);
    data.extend_from_slice(message);
    data.extend_from_slice(&sig.hashed);
    data.extend_from_slice(&[0x04, 0xFF]);
    data.extend_from_slice(&(sig.hashed.len() as u32).to_be_bytes());
    // The signature integer, left-padded to the modulus' length.
    if sig.value.len() > n.len() {
        return Err("the signature is longer than the key's modulus".into());
    }
    let mut value = vec![0u8; n.len() - sig.value.len()];
    value.extend_from_slice(&sig.value);
    RsaPublicKeyComponents { n, e }
        .verify(params, &data, &value)
        .map_err(|_| "RSA verification failed".to_string())
}

/// A v4 signature packet, as far as verification needs it.
#[derive(Debug, Clone)]
struct Signature {
    kind: u8,
    algorithm: u8,
    hash: u8,
    /// Version through the hashed subpackets: the part the signature covers.
    hashed: Vec<u8>,
    created: Option<u32>,
    key_expires: Option<u32>,
    key_flags: Option<u8>,
    issuer_id: Option<String>,
    issuer_fingerprint: Option<String>,
    value: Vec<u8>,
}

impl Signature {
    fn parse(body: &[u8]) -> Result<Signature, String> {
        let mut r = Reader::new(body, "signature");
        let version = r.u8()?;
        if version != 4 {
            return Err(format!(
                "a version {version} signature (only version 4 is read)"
            ));
        }
        let kind = r.u8()?;
        let algorithm = r.u8()?;
        let hash = r.u8()?;
        let hashed_len = usize::from(r.u16()?);
        let hashed_area = r.take(hashed_len)?;
        let hashed = body[..6 + hashed_len].to_vec();
        let unhashed_len = usize::from(r.u16()?);
        let unhashed_area = r.take(unhashed_len)?;
        r.take(2)?; // the left 16 bits of the hash: a hint only
        let value = r.mpi()?.to_vec();
        let mut sig = Signature {
            kind,
            algorithm,
            hash,
            hashed,
            created: None,
            key_expires: None,
            key_flags: None,
            issuer_id: None,
            issuer_fingerprint: None,
            value,
        };
        for (signed, area) in [(true, hashed_area), (false, unhashed_area)] {
            for (kind, data) in subpackets(area)? {
                match (kind, data.len(), signed) {
                    (2, 4, true) => sig.created = Some(be32(data)),
                    (9, 4, true) => sig.key_expires = Some(be32(data)),
                    (27, 1.., true) => sig.key_flags = Some(data[0]),
                    (16, 8, _) => sig.issuer_id = Some(hex(data)),
                    (33, 21, _) if data[0] == 4 => sig.issuer_fingerprint = Some(hex(&data[1..])),
                    _ => {}
                }
            }
        }
        Ok(sig)
    }
}

fn subpackets(mut area: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while !area.is_empty() {
        let first = usize::from(area[0]);
        let (len, skip) = match first {
            0..=191 => (first, 1),
            192..=254 => {
                let second = usize::from(*area.get(1).ok_or("a truncated subpacket")?);
                (((first - 192) << 8) + second + 192, 2)
            }
            _ => (
                be32(area.get(1..5).ok_or("a truncated subpacket")?) as usize,
                5,
            ),
        };
        let packet = area
            .get(skip..skip + len)
            .filter(|p| !p.is_empty())
            .ok_or("a truncated subpacket")?;
        out.push((packet[0] & 0x7F, &packet[1..]));
        area = &area[skip + len..];
    }
    Ok(out)
}

fn public_key(body: &[u8]) -> Result<Key, String> {
    let mut r = Reader::new(body, "public key");
    let version = r.u8()?;
    let mut hashed = vec![0x99];
    hashed.extend_from_slice(&(body.len() as u16).to_be_bytes());
    hashed.extend_from_slice(body);
    if version != 4 {
        // Kept so that packets after it are read, but it can verify nothing.
        return Ok(Key {
            fingerprint: format!("(a version {version} key)"),
            primary: String::new(),
            user: String::new(),
            created: 0,
            expires: None,
            signs: false,
            revoked: None,
            rsa: None,
            hashed: Vec::new(),
            self_signed: None,
        });
    }
    let created = be32(r.take(4)?);
    let algorithm = r.u8()?;
    let rsa = match algorithm {
        1 | 3 => Some((r.mpi()?.to_vec(), r.mpi()?.to_vec())),
        _ => None,
    };
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &hashed);
    let fingerprint = hex(digest.as_ref());
    Ok(Key {
        primary: fingerprint.clone(),
        fingerprint,
        user: String::new(),
        created,
        expires: None,
        signs: false,
        revoked: None,
        rsa,
        hashed,
        self_signed: None,
    })
}

struct Packet<'a> {
    tag: u8,
    body: &'a [u8],
}

fn packets(mut data: &[u8]) -> Result<Vec<Packet<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let head = data[0];
        if head & 0x80 == 0 {
            return Err("it is not OpenPGP data (a packet header is invalid)".into());
        }
        let truncated = || "it is truncated".to_string();
        let (tag, len, skip) = if head & 0x40 == 0 {
            let tag = (head >> 2) & 0x0F;
            match head & 0x03 {
                0 => (tag, usize::from(*data.get(1).ok_or_else(truncated)?), 2),
                1 => (tag, be16(data.get(1..3).ok_or_else(truncated)?), 3),
                2 => (tag, be32(data.get(1..5).ok_or_else(truncated)?) as usize, 5),
                _ => (tag, data.len() - 1, 1),
            }
        } else {
            let tag = head & 0x3F;
            let first = usize::from(*data.get(1).ok_or_else(truncated)?);
            match first {
                0..=191 => (tag, first, 2),
                192..=223 => {
                    let second = usize::from(*data.get(2).ok_or_else(truncated)?);
                    (tag, ((first - 192) << 8) + second + 192, 3)
                }
                255 => (tag, be32(data.get(2..6).ok_or_else(truncated)?) as usize, 6),
                _ => return Err("partial packet lengths are not supported".into()),
            }
        };
        let body = data.get(skip..skip + len).ok_or_else(truncated)?;
        out.push(Packet { tag, body });
        data = &data[skip + len..];
    }
    Ok(out)
}

/// The binary content of ASCII-armored data (checksum checked), or the data itself.
fn dearmor(data: &[u8], what: &str) -> Result<Vec<u8>, String> {
    let text = match std::str::from_utf8(data) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN PGP ") => text,
        _ => return Ok(data.to_vec()),
    };
    let mut lines = text.lines().map(str::trim_end);
    let begin = lines.next().unwrap_or_default().trim();
    let expected = begin.contains(what) || (what == "SIGNATURE" && begin.contains("MESSAGE"));
    if !expected {
        return Err(format!("it is armored as `{begin}`, not a PGP {what}"));
    }
    // Header lines ("Version: ...") end at the first empty line.
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
    }
    let mut body = String::new();
    let mut checksum = None;
    for line in lines {
        let line = line.trim();
        if line.starts_with("-----END") {
            break;
        }
        match line.strip_prefix('=') {
            Some(sum) if line.len() == 5 => checksum = Some(sum.to_string()),
            _ => body.push_str(line),
        }
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|err| format!("its armor is not base64: {err}"))?;
    if let Some(sum) = checksum {
        let expected = base64::engine::general_purpose::STANDARD
            .decode(sum.as_bytes())
            .map_err(|err| format!("its armor checksum is not base64: {err}"))?;
        let crc = crc24(&bytes).to_be_bytes();
        if expected != crc[1..] {
            return Err("its armor checksum does not match (the text was altered)".into());
        }
    }
    Ok(bytes)
}

fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0x00B7_04CE;
    for byte in data {
        crc ^= u32::from(*byte) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= 0x0186_4CFB;
            }
        }
    }
    crc & 0x00FF_FFFF
}

fn canonical_text(document: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(document.len() + document.len() / 40);
    let mut previous = 0u8;
    for byte in document {
        if *byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(*byte);
        previous = *byte;
    }
    out
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { data, at: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let out = self
            .data
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("a truncated {} packet", self.what))?;
        self.at += n;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A multiprecision integer, without leading zero bytes.
    fn mpi(&mut self) -> Result<&'a [u8], String> {
        let bits = usize::from(self.u16()?);
        let bytes = self.take(bits.div_ceil(8))?;
        let zeros = bytes.iter().take_while(|b| **b == 0).count();
        Ok(&bytes[zeros..])
    }
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A UTC date (YYYY-MM-DD) for messages.
pub fn date(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHICORP: &[u8] = include_bytes!("../adapters/release_keys/hashicorp.asc");
    const OPENTOFU: &[u8] = include_bytes!("../adapters/release_keys/opentofu.asc");
    // Published release files (verified with gpgv against the same keys when added).
    const TF_SUMS: &[u8] =
        include_bytes!("../../tests/fixtures/releases/terraform_1.9.8_SHA256SUMS");
    const TF_SIG: &[u8] =
        include_bytes!("../../tests/fixtures/releases/terraform_1.9.8_SHA256SUMS.sig");
    const TOFU_SUMS: &[u8] = include_bytes!("../../tests/fixtures/releases/tofu_1.8.5_SHA256SUMS");
    const TOFU_SIG: &[u8] =
        include_bytes!("../../tests/fixtures/releases/tofu_1.8.5_SHA256SUMS.gpgsig");

    fn key<'a>(ring: &'a Keyring, fingerprint: &str) -> &'a Key {
        ring.keys
            .iter()
            .find(|k| k.fingerprint == fingerprint)
            .unwrap_or_else(|| panic!("{fingerprint} not in {:?}", ring.primaries()))
    }

    #[test]
    fn the_publishers_keys_read_as_gpg_shows_them() {
        let hashicorp = Keyring::parse(HASHICORP).unwrap();
        let opentofu = Keyring::parse(OPENTOFU).unwrap();
        // (keyring, fingerprint, may sign, expires) as `gpg --show-keys` lists them.
        let table: [(&Keyring, &str, bool, Option<&str>); 6] = [
            (
                &hashicorp,
                "C874011F0AB405110D02105534365D9472D7468F",
                true,
                Some("2030-03-01"),
            ),
            (
                &hashicorp,
                "E091216D7CC258B2EB97DC3654422F612379BA9A",
                false,
                Some("2030-03-01"),
            ),
            (
                &hashicorp,
                "B36CBA91A2C0730C435FC280B0B441097685B676",
                true,
                Some("2022-04-20"),
            ),
            (
                &hashicorp,
                "374EC75B485913604A831CC7C820C6D5CD27AB87",
                true,
                Some("2030-03-01"),
            ),
            (
                &opentofu,
                "E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80",
                true,
                None,
            ),
            (
                &opentofu,
                "B9CC4B8B61A29DF12D8DA25A534F621E47855EB6",
                false,
                None,
            ),
        ];
        for (ring, fingerprint, signs, expires) in table {
            let key = key(ring, fingerprint);
            assert_eq!(key.signs, signs, "{fingerprint}");
            assert_eq!(key.expires.map(date).as_deref(), expires, "{fingerprint}");
        }
        assert_eq!(
            hashicorp.primaries(),
            ["C874011F0AB405110D02105534365D9472D7468F"]
        );
        assert!(key(&hashicorp, "C874011F0AB405110D02105534365D9472D7468F")
            .user
            .starts_with("HashiCorp Security"));
    }

    #[test]
    fn published_release_signatures_verify() {
        let hashicorp = Keyring::parse(HASHICORP).unwrap();
        let opentofu = Keyring::parse(OPENTOFU).unwrap();
        let terraform = verify_detached(&hashicorp, TF_SUMS, TF_SIG).unwrap();
        assert_eq!(terraform.signer, "374EC75B485913604A831CC7C820C6D5CD27AB87");
        assert_eq!(
            terraform.primary,
            "C874011F0AB405110D02105534365D9472D7468F"
        );
        assert_eq!(date(u64::from(terraform.created)), "2024-10-16");
        assert!(
            terraform.user.starts_with("HashiCorp Security"),
            "{terraform:?}"
        );
        let tofu = verify_detached(&opentofu, TOFU_SUMS, TOFU_SIG).unwrap();
        assert_eq!(tofu.signer, "E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80");
        assert_eq!(tofu.primary, tofu.signer);
        assert_eq!(date(u64::from(tofu.created)), "2024-11-04");
    }

    #[test]
    fn altered_files_and_foreign_keys_are_refused() {
        let hashicorp = Keyring::parse(HASHICORP).unwrap();
        let opentofu = Keyring::parse(OPENTOFU).unwrap();
        let text = String::from_utf8(TF_SUMS.to_vec()).unwrap();
        let one_digit = text.replacen("be591e8c", "ce591e8c", 1);
        let appended = format!("{text}\n");
        let mut flipped_sig = TF_SIG.to_vec();
        let last = flipped_sig.len() - 1;
        flipped_sig[last] ^= 1;
        // (keyring, document, signature, what the error says)
        let table: [(&Keyring, &[u8], &[u8], &str); 7] = [
            (
                &hashicorp,
                one_digit.as_bytes(),
                TF_SIG,
                "does not match the file",
            ),
            (
                &hashicorp,
                appended.as_bytes(),
                TF_SIG,
                "does not match the file",
            ),
            (&hashicorp, TF_SUMS, &flipped_sig, "does not match the file"),
            (&hashicorp, TOFU_SUMS, TF_SIG, "does not match the file"),
            (
                &opentofu,
                TF_SUMS,
                TF_SIG,
                "not the trusted key (E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80)",
            ),
            (
                &hashicorp,
                TOFU_SUMS,
                TOFU_SIG,
                "not the trusted key (C874011F0AB405110D02105534365D9472D7468F)",
            ),
            (&hashicorp, TF_SUMS, b"", "holds no signature"),
        ];
        for (ring, document, signature, expected) in table {
            let err = verify_detached(ring, document, signature).unwrap_err();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn broken_input_is_an_error_never_a_panic() {
        let hashicorp = Keyring::parse(HASHICORP).unwrap();
        for cut in 0..TF_SIG.len() {
            assert!(verify_detached(&hashicorp, TF_SUMS, &TF_SIG[..cut]).is_err());
        }
        let key = HASHICORP.to_vec();
        let binary = dearmor(&key, "PUBLIC KEY BLOCK").unwrap();
        for cut in (0..binary.len()).step_by(7) {
            let _ = Keyring::parse(&binary[..cut]);
        }
        for garbage in [&b"hello"[..], &[0xFF; 40], &[0x88, 0x05, 0x04]] {
            assert!(verify_detached(&hashicorp, TF_SUMS, garbage).is_err());
        }
        let altered =
            String::from_utf8(key)
                .unwrap()
                .replacen("mQINBGB9+xkBEACab", "mQINBGB9+xkBEACac", 1);
        let err = Keyring::parse(altered.as_bytes()).unwrap_err();
        assert!(err.contains("checksum does not match"), "{err}");
        let err = Keyring::parse(
            b"-----BEGIN PGP SIGNATURE-----\n\n=abcd\n-----END PGP SIGNATURE-----\n",
        )
        .unwrap_err();
        assert!(err.contains("not a PGP PUBLIC KEY BLOCK"), "{err}");
    }

    #[test]
    fn text_signatures_cover_crlf_lines_and_dates_read_as_utc() {
        assert_eq!(canonical_text(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_893_456_000), "2030-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
    }
}

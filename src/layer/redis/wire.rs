//! The wire format of messages between processes: a one-line header, then the event's JSON.

/// `<publisher> <number> <target>\n<json>`: the header says who sent it, its number on this
/// Redis channel (0: not numbered) and, for a process's channel, which local channel it is for;
/// for a group that keeps a stream, the target is the event's position, `@<epoch>:<offset>`
/// (written by the group_send script).
pub(super) fn encode(publisher: &str, number: u64, target: &str, json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(publisher.len() + target.len() + json.len() + 24);
    out.extend_from_slice(publisher.as_bytes());
    out.push(b' ');
    out.extend_from_slice(number.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json.as_bytes());
    out
}

pub(super) struct Decoded<'a> {
    pub(super) publisher: &'a str,
    pub(super) number: u64,
    pub(super) target: &'a str,
    pub(super) json: &'a str,
}

pub(super) fn decode(payload: &[u8]) -> Option<Decoded<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (header, json) = text.split_once('\n')?;
    let mut parts = header.splitn(3, ' ');
    let publisher = parts.next()?;
    let number = parts.next()?.parse().ok()?;
    let target = parts.next()?;
    Some(Decoded {
        publisher,
        number,
        target,
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let payload = encode("specific.ab!", 7, "specific.ab!3", r#"{"type":"x"}"#);
        let message = decode(&payload).unwrap();
        assert_eq!(message.publisher, "specific.ab!");
        assert_eq!(message.number, 7);
        assert_eq!(message.target, "specific.ab!3");
        assert_eq!(message.json, r#"{"type":"x"}"#);
        let group = encode("p", 1, "", "{\n}");
        let message = decode(&group).unwrap();
        assert_eq!(message.target, "");
        assert_eq!(message.json, "{\n}");
        assert!(decode(b"no header").is_none());
    }
}

//! The request envelope's scan against serde: any text, read by the gateway's parse (the scan,
//! serde behind it) and by serde alone, must give the same request or the same error, its
//! params read as a JSON tree and as `connect`'s fields.

use std::borrow::Cow;

use serde_json::Value;

use crate::connect_fields::ConnectFields;
use crate::frame::{parse_request_as, parse_request_by_serde};

/// Where the input goes: its first byte chooses (a text of the input alone is rarely an
/// envelope): `0` the whole frame, `1` the params, `2` the id's string, `3` members after a
/// whole envelope's, `4` a member before it; any other byte, the whole frame.
pub fn request_envelope(data: &[u8]) {
    let (&mode, rest) = data.split_first().unwrap_or((&0, data));
    let rest = String::from_utf8_lossy(rest);
    let text = match mode {
        1 => format!(r#"{{"type":"req","id":"1:x","method":"health","params":{rest}}}"#),
        2 => format!(r#"{{"type":"req","id":"{rest}","method":"health","params":{{}}}}"#),
        3 => format!(r#"{{"type":"req","id":"1:x","method":"health",{rest}}}"#),
        4 => format!(r#"{{{rest},"type":"req","id":"1:x","method":"health"}}"#),
        _ => rest.into_owned(),
    };
    let ours = parse_request_as::<Value>(&text);
    assert_eq!(ours, parse_request_by_serde::<Value>(&text), "{text}");
    assert_eq!(
        parse_request_as::<ConnectFields<'_>>(&text),
        parse_request_by_serde::<ConnectFields<'_>>(&text),
        "{text}"
    );
    if crate::envelope::scan::<Value>(&text).is_some() {
        // The scan reads only strings it can borrow.
        let req = ours.unwrap_or_else(|e| panic!("scanned, yet {e}: {text}"));
        assert!(matches!(
            (req.id, req.method),
            (Cow::Borrowed(_), Cow::Borrowed(_))
        ));
    }
}

//! The SOCKS 6 profile table and the shared-port dispatcher agree: every
//! first byte the table routes is handled as the table says.

use sixsocks_proto::server::{Dispatch, HandshakeConfig, ServerHandshake, Step};
use sixsocks_proto::v6::{Profile, ProfileSetting, Route, Socks6Limits};
use sixsocks_proto::ProtoError;

fn dispatch(first: u8) -> Dispatch {
    ServerHandshake::new(HandshakeConfig::default())
        .with_socks6(Socks6Limits::default())
        .dispatch(&[first])
}

#[test]
fn the_dispatcher_follows_the_profile_table() {
    for byte in 0..=0xFFu8 {
        match (Profile::route(byte, ProfileSetting::Auto), dispatch(byte)) {
            (Some(Route::Speak(p)), Dispatch::Socks6(m)) => assert_eq!(m.profile(), p),
            (
                Some(Route::Mismatch(p)),
                Dispatch::Step(Step::Fail {
                    bytes,
                    error: ProtoError::VersionMismatch,
                }),
            ) => assert_eq!(bytes, p.codec().version_mismatch_reply(), "{byte:#04x}"),
            (None, Dispatch::Step(_)) => {}
            (route, d) => panic!("{byte:#04x}: the table says {route:?}, the dispatcher {d:?}"),
        }
    }
}

#[test]
fn cf_is_answered_with_the_draft05_version_mismatch() {
    let Dispatch::Step(Step::Fail { bytes, error }) = dispatch(0xCF) else {
        panic!("CF was not refused");
    };
    assert_eq!(
        (bytes, error),
        (vec![0x06, 0x00], ProtoError::VersionMismatch)
    );
}

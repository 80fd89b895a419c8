//! Why a TLS handshake failed, as a fixed table of causes (no allocation, a `Copy` array of
//! counters): the alert the peer sent, the certificate error our verifier found, a timeout,
//! the peer closing or resetting mid-handshake, or a peer that does not speak TLS.

use rustls::{AlertDescription, CertificateError, Error};

use super::stream::Failure;

macro_rules! causes {
    ($($v:ident = $name:literal,)*) => {
        /// One cause of a failed handshake; [`TlsCause::name`] is its report and JSON key.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum TlsCause { $($v,)* }

        impl TlsCause {
            pub const ALL: &'static [TlsCause] = &[$(TlsCause::$v,)*];

            pub fn name(self) -> &'static str {
                match self { $(TlsCause::$v => $name,)* }
            }
        }
    };
}

causes! {
    HandshakeTimeout = "handshake_timeout",
    PeerClosed = "peer_closed",
    Reset = "reset",
    Io = "io_error",
    CertUnknownIssuer = "cert_unknown_issuer",
    CertNotValidForName = "cert_not_valid_for_name",
    CertExpired = "cert_expired",
    CertNotValidYet = "cert_not_valid_yet",
    CertBadSignature = "cert_bad_signature",
    CertInvalidPurpose = "cert_invalid_purpose",
    CertBadEncoding = "cert_bad_encoding",
    CertOther = "cert_other",
    NoCertificate = "no_certificate",
    NotTls = "not_tls",
    UnexpectedMessage = "unexpected_message",
    PeerIncompatible = "peer_incompatible",
    PeerMisbehaved = "peer_misbehaved",
    DecryptError = "decrypt_error",
    NoApplicationProtocol = "no_application_protocol",
    AlertHandshakeFailure = "alert_handshake_failure",
    AlertProtocolVersion = "alert_protocol_version",
    AlertBadCertificate = "alert_bad_certificate",
    AlertUnknownCa = "alert_unknown_ca",
    AlertCertificateUnknown = "alert_certificate_unknown",
    AlertCertificateExpired = "alert_certificate_expired",
    AlertDecryptError = "alert_decrypt_error",
    AlertIllegalParameter = "alert_illegal_parameter",
    AlertInternalError = "alert_internal_error",
    AlertUnrecognizedName = "alert_unrecognized_name",
    AlertNoApplicationProtocol = "alert_no_application_protocol",
    AlertAccessDenied = "alert_access_denied",
    AlertDecodeError = "alert_decode_error",
    AlertUnexpectedMessage = "alert_unexpected_message",
    AlertOther = "alert_other",
    Other = "other",
}

/// Number of causes (the length of a counter array).
pub const CAUSES: usize = TlsCause::ALL.len();

impl TlsCause {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_failure(f: &Failure) -> TlsCause {
        match f {
            Failure::Eof => TlsCause::PeerClosed,
            Failure::Io(e) => match crate::net::Cause::from_io(e) {
                crate::net::Cause::Reset => TlsCause::Reset,
                _ => TlsCause::Io,
            },
            Failure::Tls(e) => TlsCause::from_tls(e),
        }
    }

    pub fn from_tls(e: &Error) -> TlsCause {
        match e {
            Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => TlsCause::CertUnknownIssuer,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    TlsCause::CertNotValidForName
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsCause::CertExpired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsCause::CertNotValidYet
                }
                CertificateError::BadSignature => TlsCause::CertBadSignature,
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                    TlsCause::CertInvalidPurpose
                }
                CertificateError::BadEncoding => TlsCause::CertBadEncoding,
                _ => TlsCause::CertOther,
            },
            Error::NoCertificatesPresented => TlsCause::NoCertificate,
            // Bytes that are no TLS record at all: a plain-text server answered.
            Error::InvalidMessage(_) => TlsCause::NotTls,
            Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
                TlsCause::UnexpectedMessage
            }
            Error::PeerIncompatible(_) => TlsCause::PeerIncompatible,
            Error::PeerMisbehaved(_) => TlsCause::PeerMisbehaved,
            Error::DecryptError => TlsCause::DecryptError,
            Error::NoApplicationProtocol => TlsCause::NoApplicationProtocol,
            Error::AlertReceived(a) => TlsCause::from_alert(*a),
            _ => TlsCause::Other,
        }
    }

    fn from_alert(a: AlertDescription) -> TlsCause {
        use AlertDescription as A;
        match a {
            A::HandshakeFailure => TlsCause::AlertHandshakeFailure,
            A::ProtocolVersion => TlsCause::AlertProtocolVersion,
            A::BadCertificate => TlsCause::AlertBadCertificate,
            A::UnknownCA => TlsCause::AlertUnknownCa,
            A::CertificateUnknown => TlsCause::AlertCertificateUnknown,
            A::CertificateExpired => TlsCause::AlertCertificateExpired,
            A::DecryptError => TlsCause::AlertDecryptError,
            A::IllegalParameter => TlsCause::AlertIllegalParameter,
            A::InternalError => TlsCause::AlertInternalError,
            A::UnrecognisedName => TlsCause::AlertUnrecognizedName,
            A::NoApplicationProtocol => TlsCause::AlertNoApplicationProtocol,
            A::AccessDenied => TlsCause::AlertAccessDenied,
            A::DecodeError => TlsCause::AlertDecodeError,
            A::UnexpectedMessage => TlsCause::AlertUnexpectedMessage,
            _ => TlsCause::AlertOther,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexes_dense() {
        for (i, c) in TlsCause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(TlsCause::ALL.iter().filter(|o| o.name() == c.name()).count(), 1, "{}", c.name());
        }
    }

    #[test]
    fn errors_map_to_causes() {
        let cases = [
            (Error::InvalidCertificate(CertificateError::UnknownIssuer), "cert_unknown_issuer"),
            (Error::InvalidCertificate(CertificateError::NotValidForName), "cert_not_valid_for_name"),
            (Error::InvalidCertificate(CertificateError::Expired), "cert_expired"),
            (Error::AlertReceived(AlertDescription::HandshakeFailure), "alert_handshake_failure"),
            (Error::AlertReceived(AlertDescription::UnknownCA), "alert_unknown_ca"),
            // A server that accepts none of the protocols offered (`serve --alpn`).
            (Error::AlertReceived(AlertDescription::NoApplicationProtocol), "alert_no_application_protocol"),
            (Error::NoApplicationProtocol, "no_application_protocol"),
            (Error::AlertReceived(AlertDescription::BadRecordMac), "alert_other"),
            (Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType), "not_tls"),
            (Error::General("x".into()), "other"),
        ];
        for (e, name) in cases {
            assert_eq!(TlsCause::from_tls(&e).name(), name, "{e:?}");
        }
        assert_eq!(TlsCause::from_failure(&Failure::Eof).name(), "peer_closed");
        let reset = std::io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(TlsCause::from_failure(&Failure::Io(reset)).name(), "reset");
    }
}

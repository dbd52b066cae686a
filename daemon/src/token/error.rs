//! The token layer's one error type, and how a raw PKCS#11 failure becomes it: every call the
//! service layer makes into `token/` ends here when it fails. Also the classification that
//! decides whether a failure means "the token is gone" (see `health.rs` for what follows).

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// What can go wrong in the token layer. The service layer converts it at its boundary
/// (Unavailable/Busy → UNAVAILABLE, NoPin → FAILED_PRECONDITION, …).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No present, initialised token has this serial.
    #[error("no token with serial {serial:?}")]
    NotFound { serial: String },
    /// The token is gone, marked unavailable after a device error, or being recovered.
    #[error("token {serial:?} is unavailable: {reason}")]
    Unavailable { serial: String, reason: String },
    /// Every pooled session of the token stayed busy for `session_wait_ms`.
    #[error("token {serial:?} is busy: no session became free in time")]
    Busy { serial: String },
    /// No PIN is configured for the token (or its environment variable is unset).
    #[error("no PIN is configured for token {serial:?}")]
    NoPin { serial: String },
    /// No private key with this CKA_ID on the token.
    #[error("no key with id {key_id} on token {serial:?}")]
    KeyNotFound { serial: String, key_id: String },
    /// A PKCS#11 function failed: its name (`C_Sign`) and return code (`CKR_PIN_INCORRECT`).
    #[error("{function} failed: {code}")]
    Pkcs11 { function: &'static str, code: String },
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("PKCS#11 module {path}: {message}")]
    Module { path: String, message: String },
    /// A bug or an unexpected answer from the module (e.g. a malformed public key attribute).
    #[error("internal token error: {0}")]
    Internal(String),
}

impl TokenError {
    /// Converts a cryptoki error, keeping the failing function and CKR code.
    pub(super) fn from_cryptoki(e: &CkError) -> TokenError {
        match e {
            CkError::Pkcs11(rv, function) => {
                TokenError::Pkcs11 { function: function_name(*function), code: ckr_name(*rv) }
            }
            other => TokenError::Internal(format!("cryptoki: {other}")),
        }
    }
}

impl From<CkError> for TokenError {
    fn from(e: CkError) -> Self {
        TokenError::from_cryptoki(&e)
    }
}

/// The failure of one operation run on a pooled session: a raw cryptoki error, which the pool
/// classifies (a "token gone" code marks the token unavailable), an already typed error that
/// passes through unchanged, or a detected loss of the session state.
#[derive(Debug)]
pub(super) enum OpError {
    Ck(CkError),
    Token(TokenError),
    /// The operation found the token not as the pool left it (e.g. no longer logged in,
    /// which a token reset does without any call failing): treated like a "gone" code.
    Gone(String),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<TokenError> for OpError {
    fn from(e: TokenError) -> Self {
        OpError::Token(e)
    }
}

/// Return codes that mean the token (or our sessions on it) no longer exist as we knew them:
/// the card was pulled, the HSM rebooted, the reader went away. CKR_USER_NOT_LOGGED_IN is here
/// because pooled sessions are always logged in: seeing it means the token was reset under us.
pub(super) fn is_token_gone(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DeviceRemoved
            | RvError::SessionHandleInvalid
            | RvError::TokenNotPresent
            | RvError::SessionClosed
            | RvError::DeviceError
            | RvError::SlotIdInvalid
            | RvError::UserNotLoggedIn
    )
}

/// The cryptoki error, if it is a "token gone" code.
pub(super) fn gone_code(e: &CkError) -> Option<(RvError, Function)> {
    match e {
        CkError::Pkcs11(rv, f) if is_token_gone(*rv) => Some((*rv, *f)),
        _ => None,
    }
}

/// Login failures that must not be retried automatically: a real card counts wrong PINs and
/// locks itself, so after one of these the daemon stops presenting the PIN until restarted.
pub(super) fn is_pin_rejection(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinExpired
            | RvError::PinLocked
            | RvError::UserPinNotInitialized
    )
}

/// Counts one PKCS#11 call in the metrics (by the C function it stands for and, when it failed,
/// by CKR code) and hands its result back unchanged. Every cryptoki call of this layer goes
/// through it: `counted("C_Sign", session.sign(..))`. A cryptoki call that runs several C
/// functions (find = C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal) counts once, under the
/// one that names it.
pub(super) fn counted<T>(function: &'static str, result: Result<T, CkError>) -> Result<T, CkError> {
    let metrics = crate::metrics::global();
    match &result {
        Ok(_) => metrics.pkcs11_call(function, None),
        Err(CkError::Pkcs11(rv, _)) => metrics.pkcs11_call(function, Some(&ckr_name(*rv))),
        // Failed before reaching the module (an attribute that would not convert): no CKR code.
        Err(_) => metrics.pkcs11_call(function, Some(crate::metrics::UNKNOWN)),
    }
    result
}

/// Lower-case hex of a CKA_ID, for messages.
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `C_…` name of a cryptoki [`Function`], for error codes and logs.
pub(super) fn function_name(function: Function) -> &'static str {
    match function {
        Function::Initialize => "C_Initialize",
        Function::Finalize => "C_Finalize",
        Function::GetInfo => "C_GetInfo",
        Function::GetFunctionList => "C_GetFunctionList",
        Function::GetSlotList => "C_GetSlotList",
        Function::GetSlotInfo => "C_GetSlotInfo",
        Function::GetTokenInfo => "C_GetTokenInfo",
        Function::GetMechanismList => "C_GetMechanismList",
        Function::GetMechanismInfo => "C_GetMechanismInfo",
        Function::InitToken => "C_InitToken",
        Function::InitPIN => "C_InitPIN",
        Function::SetPIN => "C_SetPIN",
        Function::OpenSession => "C_OpenSession",
        Function::CloseSession => "C_CloseSession",
        Function::CloseAllSessions => "C_CloseAllSessions",
        Function::GetSessionInfo => "C_GetSessionInfo",
        Function::GetOperationState => "C_GetOperationState",
        Function::SetOperationState => "C_SetOperationState",
        Function::Login => "C_Login",
        Function::Logout => "C_Logout",
        Function::CreateObject => "C_CreateObject",
        Function::CopyObject => "C_CopyObject",
        Function::DestroyObject => "C_DestroyObject",
        Function::GetObjectSize => "C_GetObjectSize",
        Function::GetAttributeValue => "C_GetAttributeValue",
        Function::SetAttributeValue => "C_SetAttributeValue",
        Function::FindObjectsInit => "C_FindObjectsInit",
        Function::FindObjects => "C_FindObjects",
        Function::FindObjectsFinal => "C_FindObjectsFinal",
        Function::EncryptInit => "C_EncryptInit",
        Function::Encrypt => "C_Encrypt",
        Function::EncryptUpdate => "C_EncryptUpdate",
        Function::EncryptFinal => "C_EncryptFinal",
        Function::DecryptInit => "C_DecryptInit",
        Function::Decrypt => "C_Decrypt",
        Function::DecryptUpdate => "C_DecryptUpdate",
        Function::DecryptFinal => "C_DecryptFinal",
        Function::DigestInit => "C_DigestInit",
        Function::Digest => "C_Digest",
        Function::DigestUpdate => "C_DigestUpdate",
        Function::DigestKey => "C_DigestKey",
        Function::DigestFinal => "C_DigestFinal",
        Function::SignInit => "C_SignInit",
        Function::Sign => "C_Sign",
        Function::SignUpdate => "C_SignUpdate",
        Function::SignFinal => "C_SignFinal",
        Function::SignRecoverInit => "C_SignRecoverInit",
        Function::SignRecover => "C_SignRecover",
        Function::VerifyInit => "C_VerifyInit",
        Function::Verify => "C_Verify",
        Function::VerifyUpdate => "C_VerifyUpdate",
        Function::VerifyFinal => "C_VerifyFinal",
        Function::VerifyRecoverInit => "C_VerifyRecoverInit",
        Function::VerifyRecover => "C_VerifyRecover",
        Function::DigestEncryptUpdate => "C_DigestEncryptUpdate",
        Function::DecryptDigestUpdate => "C_DecryptDigestUpdate",
        Function::SignEncryptUpdate => "C_SignEncryptUpdate",
        Function::DecryptVerifyUpdate => "C_DecryptVerifyUpdate",
        Function::GenerateKey => "C_GenerateKey",
        Function::GenerateKeyPair => "C_GenerateKeyPair",
        Function::WrapKey => "C_WrapKey",
        Function::UnwrapKey => "C_UnwrapKey",
        Function::DeriveKey => "C_DeriveKey",
        Function::SeedRandom => "C_SeedRandom",
        Function::GenerateRandom => "C_GenerateRandom",
        Function::GetFunctionStatus => "C_GetFunctionStatus",
        Function::CancelFunction => "C_CancelFunction",
        Function::WaitForSlotEvent => "C_WaitForSlotEvent",
        Function::GetInterfaceList => "C_GetInterfaceList",
        Function::GetInterface => "C_GetInterface",
        Function::LoginUser => "C_LoginUser",
        Function::SessionCancel => "C_SessionCancel",
        Function::MessageEncryptInit => "C_MessageEncryptInit",
        Function::EncryptMessage => "C_EncryptMessage",
        Function::EncryptMessageBegin => "C_EncryptMessageBegin",
        Function::EncryptMessageNext => "C_EncryptMessageNext",
        Function::MessageEncryptFinal => "C_MessageEncryptFinal",
        Function::MessageDecryptInit => "C_MessageDecryptInit",
        Function::DecryptMessage => "C_DecryptMessage",
        Function::DecryptMessageBegin => "C_DecryptMessageBegin",
        Function::DecryptMessageNext => "C_DecryptMessageNext",
        Function::MessageDecryptFinal => "C_MessageDecryptFinal",
        Function::MessageSignInit => "C_MessageSignInit",
        Function::SignMessage => "C_SignMessage",
        Function::SignMessageBegin => "C_SignMessageBegin",
        Function::SignMessageNext => "C_SignMessageNext",
        Function::MessageSignFinal => "C_MessageSignFinal",
        Function::MessageVerifyInit => "C_MessageVerifyInit",
        Function::VerifyMessage => "C_VerifyMessage",
        Function::VerifyMessageBegin => "C_VerifyMessageBegin",
        Function::VerifyMessageNext => "C_VerifyMessageNext",
        Function::MessageVerifyFinal => "C_MessageVerifyFinal",
        Function::EncapsulateKey => "C_EncapsulateKey",
        Function::DecapsulateKey => "C_DecapsulateKey",
        Function::VerifySignatureInit => "C_VerifySignatureInit",
        Function::VerifySignature => "C_VerifySignature",
        Function::VerifySignatureUpdate => "C_VerifySignatureUpdate",
        Function::VerifySignatureFinal => "C_VerifySignatureFinal",
        Function::GetSessionValidationFlags => "C_GetSessionValidationFlags",
        Function::AsyncComplete => "C_AsyncComplete",
        Function::AsyncGetID => "C_AsyncGetID",
        Function::AsyncJoin => "C_AsyncJoin",
        Function::WrapKeyAuthenticated => "C_WrapKeyAuthenticated",
        Function::UnwrapKeyAuthenticated => "C_UnwrapKeyAuthenticated",
    }
}

/// `CKR_…` name of a cryptoki [`RvError`] (the PKCS#11 return value), for error codes and logs.
pub(super) fn ckr_name(rv: RvError) -> String {
    let name = match rv {
        RvError::Cancel => "CKR_CANCEL",
        RvError::HostMemory => "CKR_HOST_MEMORY",
        RvError::SlotIdInvalid => "CKR_SLOT_ID_INVALID",
        RvError::GeneralError => "CKR_GENERAL_ERROR",
        RvError::FunctionFailed => "CKR_FUNCTION_FAILED",
        RvError::ArgumentsBad => "CKR_ARGUMENTS_BAD",
        RvError::NoEvent => "CKR_NO_EVENT",
        RvError::NeedToCreateThreads => "CKR_NEED_TO_CREATE_THREADS",
        RvError::CantLock => "CKR_CANT_LOCK",
        RvError::AttributeReadOnly => "CKR_ATTRIBUTE_READ_ONLY",
        RvError::AttributeSensitive => "CKR_ATTRIBUTE_SENSITIVE",
        RvError::AttributeTypeInvalid => "CKR_ATTRIBUTE_TYPE_INVALID",
        RvError::AttributeValueInvalid => "CKR_ATTRIBUTE_VALUE_INVALID",
        RvError::ActionProhibited => "CKR_ACTION_PROHIBITED",
        RvError::DataInvalid => "CKR_DATA_INVALID",
        RvError::DataLenRange => "CKR_DATA_LEN_RANGE",
        RvError::DeviceError => "CKR_DEVICE_ERROR",
        RvError::DeviceMemory => "CKR_DEVICE_MEMORY",
        RvError::DeviceRemoved => "CKR_DEVICE_REMOVED",
        RvError::EncryptedDataInvalid => "CKR_ENCRYPTED_DATA_INVALID",
        RvError::EncryptedDataLenRange => "CKR_ENCRYPTED_DATA_LEN_RANGE",
        RvError::FunctionCanceled => "CKR_FUNCTION_CANCELED",
        RvError::FunctionNotParallel => "CKR_FUNCTION_NOT_PARALLEL",
        RvError::FunctionNotSupported => "CKR_FUNCTION_NOT_SUPPORTED",
        RvError::CurveNotSupported => "CKR_CURVE_NOT_SUPPORTED",
        RvError::KeyHandleInvalid => "CKR_KEY_HANDLE_INVALID",
        RvError::KeySizeRange => "CKR_KEY_SIZE_RANGE",
        RvError::KeyTypeInconsistent => "CKR_KEY_TYPE_INCONSISTENT",
        RvError::KeyNotNeeded => "CKR_KEY_NOT_NEEDED",
        RvError::KeyChanged => "CKR_KEY_CHANGED",
        RvError::KeyNeeded => "CKR_KEY_NEEDED",
        RvError::KeyIndigestible => "CKR_KEY_INDIGESTIBLE",
        RvError::KeyFunctionNotPermitted => "CKR_KEY_FUNCTION_NOT_PERMITTED",
        RvError::KeyNotWrappable => "CKR_KEY_NOT_WRAPPABLE",
        RvError::KeyUnextractable => "CKR_KEY_UNEXTRACTABLE",
        RvError::MechanismInvalid => "CKR_MECHANISM_INVALID",
        RvError::MechanismParamInvalid => "CKR_MECHANISM_PARAM_INVALID",
        RvError::ObjectHandleInvalid => "CKR_OBJECT_HANDLE_INVALID",
        RvError::OperationActive => "CKR_OPERATION_ACTIVE",
        RvError::OperationNotInitialized => "CKR_OPERATION_NOT_INITIALIZED",
        RvError::PinIncorrect => "CKR_PIN_INCORRECT",
        RvError::PinInvalid => "CKR_PIN_INVALID",
        RvError::PinLenRange => "CKR_PIN_LEN_RANGE",
        RvError::PinExpired => "CKR_PIN_EXPIRED",
        RvError::PinLocked => "CKR_PIN_LOCKED",
        RvError::SessionClosed => "CKR_SESSION_CLOSED",
        RvError::SessionCount => "CKR_SESSION_COUNT",
        RvError::SessionHandleInvalid => "CKR_SESSION_HANDLE_INVALID",
        RvError::SessionParallelNotSupported => "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
        RvError::SessionReadOnly => "CKR_SESSION_READ_ONLY",
        RvError::SessionExists => "CKR_SESSION_EXISTS",
        RvError::SessionReadOnlyExists => "CKR_SESSION_READ_ONLY_EXISTS",
        RvError::SessionReadWriteSoExists => "CKR_SESSION_READ_WRITE_SO_EXISTS",
        RvError::SignatureInvalid => "CKR_SIGNATURE_INVALID",
        RvError::SignatureLenRange => "CKR_SIGNATURE_LEN_RANGE",
        RvError::TemplateIncomplete => "CKR_TEMPLATE_INCOMPLETE",
        RvError::TemplateInconsistent => "CKR_TEMPLATE_INCONSISTENT",
        RvError::TokenNotPresent => "CKR_TOKEN_NOT_PRESENT",
        RvError::TokenNotRecognized => "CKR_TOKEN_NOT_RECOGNIZED",
        RvError::TokenWriteProtected => "CKR_TOKEN_WRITE_PROTECTED",
        RvError::UnwrappingKeyHandleInvalid => "CKR_UNWRAPPING_KEY_HANDLE_INVALID",
        RvError::UnwrappingKeySizeRange => "CKR_UNWRAPPING_KEY_SIZE_RANGE",
        RvError::UnwrappingKeyTypeInconsistent => "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
        RvError::UserAlreadyLoggedIn => "CKR_USER_ALREADY_LOGGED_IN",
        RvError::UserNotLoggedIn => "CKR_USER_NOT_LOGGED_IN",
        RvError::UserPinNotInitialized => "CKR_USER_PIN_NOT_INITIALIZED",
        RvError::UserTypeInvalid => "CKR_USER_TYPE_INVALID",
        RvError::UserAnotherAlreadyLoggedIn => "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
        RvError::UserTooManyTypes => "CKR_USER_TOO_MANY_TYPES",
        RvError::WrappedKeyInvalid => "CKR_WRAPPED_KEY_INVALID",
        RvError::WrappedKeyLenRange => "CKR_WRAPPED_KEY_LEN_RANGE",
        RvError::WrappingKeyHandleInvalid => "CKR_WRAPPING_KEY_HANDLE_INVALID",
        RvError::WrappingKeySizeRange => "CKR_WRAPPING_KEY_SIZE_RANGE",
        RvError::WrappingKeyTypeInconsistent => "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
        RvError::RandomSeedNotSupported => "CKR_RANDOM_SEED_NOT_SUPPORTED",
        RvError::RandomNoRng => "CKR_RANDOM_NO_RNG",
        RvError::DomainParamsInvalid => "CKR_DOMAIN_PARAMS_INVALID",
        RvError::BufferTooSmall => "CKR_BUFFER_TOO_SMALL",
        RvError::SavedStateInvalid => "CKR_SAVED_STATE_INVALID",
        RvError::InformationSensitive => "CKR_INFORMATION_SENSITIVE",
        RvError::StateUnsaveable => "CKR_STATE_UNSAVEABLE",
        RvError::CryptokiNotInitialized => "CKR_CRYPTOKI_NOT_INITIALIZED",
        RvError::CryptokiAlreadyInitialized => "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        RvError::MutexBad => "CKR_MUTEX_BAD",
        RvError::MutexNotLocked => "CKR_MUTEX_NOT_LOCKED",
        RvError::NewPinMode => "CKR_NEW_PIN_MODE",
        RvError::NextOtp => "CKR_NEXT_OTP",
        RvError::ExceededMaxIterations => "CKR_EXCEEDED_MAX_ITERATIONS",
        RvError::FipsSelfTestFailed => "CKR_FIPS_SELF_TEST_FAILED",
        RvError::LibraryLoadFailed => "CKR_LIBRARY_LOAD_FAILED",
        RvError::PinTooWeak => "CKR_PIN_TOO_WEAK",
        RvError::PublicKeyInvalid => "CKR_PUBLIC_KEY_INVALID",
        RvError::FunctionRejected => "CKR_FUNCTION_REJECTED",
        RvError::VendorDefined(code) => return format!("CKR_VENDOR_DEFINED_{code:#x}"),
        RvError::UnknownErrorCode(code) => return format!("CKR_UNKNOWN_{code:#x}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs11_errors_keep_function_and_code() {
        let e = TokenError::from(CkError::Pkcs11(RvError::PinIncorrect, Function::Login));
        match &e {
            TokenError::Pkcs11 { function, code } => {
                assert_eq!(*function, "C_Login");
                assert_eq!(code, "CKR_PIN_INCORRECT");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(e.to_string(), "C_Login failed: CKR_PIN_INCORRECT");
    }

    #[test]
    fn names_cover_unusual_codes() {
        assert_eq!(ckr_name(RvError::UserAlreadyLoggedIn), "CKR_USER_ALREADY_LOGGED_IN");
        assert_eq!(ckr_name(RvError::Cancel), "CKR_CANCEL");
        assert_eq!(ckr_name(RvError::VendorDefined(0x8000_0001)), "CKR_VENDOR_DEFINED_0x80000001");
        assert_eq!(ckr_name(RvError::UnknownErrorCode(0x1234)), "CKR_UNKNOWN_0x1234");
        assert_eq!(function_name(Function::InitPIN), "C_InitPIN");
        assert_eq!(function_name(Function::SignInit), "C_SignInit");
    }

    #[test]
    fn non_pkcs11_errors_are_internal() {
        assert!(matches!(TokenError::from(CkError::InvalidValue), TokenError::Internal(_)));
    }

    #[test]
    fn gone_classification() {
        for rv in [
            RvError::DeviceRemoved,
            RvError::SessionHandleInvalid,
            RvError::TokenNotPresent,
            RvError::SessionClosed,
            RvError::DeviceError,
            RvError::SlotIdInvalid,
            RvError::UserNotLoggedIn,
        ] {
            assert!(is_token_gone(rv), "{rv:?} must mark the token unavailable");
            assert!(gone_code(&CkError::Pkcs11(rv, Function::Sign)).is_some());
        }
        for rv in [
            RvError::PinIncorrect,
            RvError::ObjectHandleInvalid,
            RvError::KeyHandleInvalid,
            RvError::GeneralError,
            RvError::FunctionFailed,
            RvError::UserAlreadyLoggedIn,
            RvError::DataLenRange,
            RvError::MechanismInvalid,
        ] {
            assert!(!is_token_gone(rv), "{rv:?} is an ordinary failure");
        }
        assert!(gone_code(&CkError::NullFunctionPointer).is_none());
    }

    #[test]
    fn pin_rejections() {
        assert!(is_pin_rejection(RvError::PinIncorrect));
        assert!(is_pin_rejection(RvError::PinLocked));
        assert!(!is_pin_rejection(RvError::UserAlreadyLoggedIn));
        assert!(!is_pin_rejection(RvError::DeviceRemoved));
    }

    #[test]
    fn hex_of_ids() {
        assert_eq!(hex(&[0x00, 0xab, 0x10]), "00ab10");
        assert_eq!(hex(&[]), "");
    }
}

//! PKCS#11 back end (placeholder until the token layer lands).

//! X.509 / CSR / CRL building and parsing (issuance issue; being built).

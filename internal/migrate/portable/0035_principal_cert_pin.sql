-- A principal's client-certificate binding on the principal's own row
-- (issue 21): the pin (SubjectPublicKeyInfo SHA-256, hex) that its keys
-- need, covered by the principal's row MAC when set (vault/rowmac.go,
-- rowSpec.opt). principal_certs alone could be deleted by a hand in the
-- database, and the principal then authenticated without its certificate;
-- with the pin here, clearing it breaks the principal's MAC (refused,
-- row-integrity alert) and deleting principal_certs' row changes nothing.
-- Bindings made before this column are copied onto it at the next start
-- (vault.SealCertPins), by custos, with their MACs.
ALTER TABLE principals ADD COLUMN cert_pin TEXT;

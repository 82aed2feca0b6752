-- Who sponsored a principal (issue 20, one person behind several
-- accounts): the identity (person pseudonym) of the first approver whose
-- decision issued it a key. Two-party rules refuse an approver sponsored
-- by the person it would approve for, as they refuse one that person
-- created. A MACed column of principals (vault/rowmac.go, rowSpec.opt:
-- it enters the row MAC only when set), so clearing it by hand breaks the
-- principal's MAC and the principal is refused.
ALTER TABLE principals ADD COLUMN sponsor_identity TEXT;

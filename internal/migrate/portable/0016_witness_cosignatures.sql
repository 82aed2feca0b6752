-- Witness cosignatures (C2SP tlog-cosignature, cosignature/v1) collected
-- for the log's checkpoints by the cosigner (witness/): one signature line
-- per checkpoint size and witness. /log/checkpoint serves a checkpoint
-- with the lines collected for it; a checkpoint with a row here was
-- witnessed and is kept by retention.
CREATE TABLE audit_cosignatures (
    size        BIGINT NOT NULL,
    witness     TEXT NOT NULL,
    signature   TEXT NOT NULL,
    cosigned_at BIGINT NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE INDEX audit_cosignatures_witness ON audit_cosignatures(witness, size);

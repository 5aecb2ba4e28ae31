-- Version 6: what a task's credential revocation could not prove gone
-- (`TaskState::VerifiedWithResidualRisk`): a protobuf `jml.v1.ResidualRisks`,
-- NULL when the task has none.
ALTER TABLE tasks ADD COLUMN residual_risks BLOB;

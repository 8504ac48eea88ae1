-- One meaning per word: this column holds the gate's verdict ("accepted"), not whether the adapter was promoted to
-- serving (a gate-passing candidate may go on a trial and lose it). Whether it served is the stage ('promoted').
ALTER TABLE training_runs RENAME COLUMN promoted TO accepted;

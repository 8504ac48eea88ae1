"""Operations: backup and restore, doctor."""

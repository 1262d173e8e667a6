"""Statistics from tipline's records: outcome statistics, transparency tables, answers to
outcome questions, and NCMEC's published figures as a source beside them."""

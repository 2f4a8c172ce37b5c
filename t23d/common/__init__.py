"""Small pieces shared by every stage: errors, atomic file writes, typed config loading, schedules."""

"""The stages of the method, each runnable alone: teacher, (label, student, baseline), evaluate."""

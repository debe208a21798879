"""What people read: the progress plot and summary figures."""

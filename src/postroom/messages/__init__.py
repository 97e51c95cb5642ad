"""The message model shared by every package that sends, renders, tracks or reports on mail: the validated send
request and the event shape."""

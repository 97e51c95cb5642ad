"""The SMTP side: a submission listener authenticated by API key, and bounce intake."""

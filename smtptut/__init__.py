"""smtptut: the Twisted Mail SMTP tutorial made into working software."""

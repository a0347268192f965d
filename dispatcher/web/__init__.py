"""The web app (`aln serve`): signed webhooks, the email acknowledgement page, the officer
API and the dashboard."""

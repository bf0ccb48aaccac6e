"""The auditor's explorer: a read-only web page over the ledger (issue 19). See provanchor.explorer.app."""

(function(){
	var left=+document.body.dataset.left,
		st=document.getElementById('status'),
		tl=document.getElementById('left'),
		qr=document.getElementById('qr'),
		code=document.getElementById('code'),
		dial=document.getElementById('dial'),
		bar=document.getElementById('barcode'),
		over=false;
	function hide(){
		qr.style.display='none';
		code.style.display='none';
		dial.style.display='none';
		bar.style.display='none';
		tl.textContent=''
	}
	function show(s){
		if(s.state==='offered'){
			if(typeof s.expires_in==='number')left=s.expires_in;
			return
		}
		if(s.state==='done'){
			over=true;
			hide();
			st.className='ok';
			st.textContent='Moved to '+(s.taken_by||'the new device');
			return
		}
		if(s.state==='failed'){
			over=true;
			hide();
			st.className='bad';
			st.textContent='Move failed: '+(s.reason||'unknown reason');
			return
		}
		hide();
		st.className='muted';
		st.textContent='Code used, moving the call…'
	}
	function tick(){
		if(over)return;
		if(left>0)left--;
		if(tl.textContent!==''||left>0)
			tl.textContent=left>0?('Time left: '+Math.floor(left/60)+':'+('0'+left%60).slice(-2)):'The code has expired';
		fetch('state',{cache:'no-store'})
			.then(function(r){return r.json()})
			.then(show)
			.catch(function(){})
	}
	tick();
	setInterval(tick,1000)
})();

(function(){
	var v=document.getElementById('v'),
		layer=document.getElementById('layer'),
		st=document.getElementById('status'),
		base=location.pathname.replace(/\/+$/,''),
		since=0,url='',srv=null,at=0,seen={};
	function expected(){
		if(!srv)return 0;
		return srv.pos+(srv.playing?(performance.now()-at)/1000:0);
	}
	function follow(){
		if(!srv)return;
		var want=expected();
		if(v.readyState>0&&Math.abs(v.currentTime-want)>(srv.playing?0.15:0.05))v.currentTime=want;
		if(srv.playing&&v.paused)v.play().catch(function(){});
		if(!srv.playing&&!v.paused)v.pause();
	}
	function react(r){
		if(seen[r.seq])return;
		seen[r.seq]=1;
		var e=document.createElement('span');
		e.className='reaction';
		e.textContent=r.emoji;
		e.dataset.x=r.x;
		e.dataset.y=r.y;
		e.style.cssText='position:absolute;font-size:2.5em;transform:translate(-50%,-50%);left:'+(r.x*100)+'%;top:'+(r.y*100)+'%';
		layer.appendChild(e);
		setTimeout(function(){if(e.parentNode)layer.removeChild(e)},8000);
	}
	function apply(s){
		srv=s;
		at=performance.now();
		since=s.seq;
		if(s.url!==url){url=s.url;v.src=url;}
		(s.reactions||[]).forEach(react);
		st.className='muted';
		st.textContent=s.playing?'Playing':'Paused';
		follow();
	}
	function poll(){
		fetch(base+'/events?since='+since,{cache:'no-store'})
			.then(function(r){
				if(r.status===404){st.className='bad';st.textContent='This watch page has ended.';throw 0;}
				if(!r.ok)throw 1;
				return r.json();
			})
			.then(function(s){apply(s);poll();})
			.catch(function(e){if(e!==0)setTimeout(poll,2000);});
	}
	function send(b){
		fetch(base+'/control',{method:'POST',headers:{'Content-Type':'application/json'},body:JSON.stringify(b)}).catch(function(){});
	}
	v.addEventListener('play',function(){if(srv&&!srv.playing)send({action:'play'});});
	v.addEventListener('pause',function(){if(srv&&srv.playing&&!v.ended)send({action:'pause'});});
	v.addEventListener('seeked',function(){if(srv&&Math.abs(v.currentTime-expected())>0.5)send({action:'seek',pos:v.currentTime});});
	v.addEventListener('loadedmetadata',follow);
	setInterval(follow,1000);
	poll();
})();
